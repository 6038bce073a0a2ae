"""Write the API reference (Markdown) from the public API's docstrings.

    python -m taskq.tools.reference > docs/reference.md

Covers every name in ``taskq.__all__`` and ``taskq.aio.__all__``: classes with their
constructor and public methods and properties, functions, enums with their members,
exceptions with their bases. The output depends only on the code, so a test can
check that docs/reference.md is up to date.
"""

from __future__ import annotations

import enum
import inspect
import re
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

HEADER = """# API reference

Generated from the docstrings by `python -m taskq.tools.reference > docs/reference.md`;
do not edit by hand (`tests/test_docs.py` checks it is up to date). The contract these
names keep is described in prose in the [README](../README.md) and the
[guarantees](guarantees.md).
"""

_ADDRESS = re.compile(r" at 0x[0-9a-f]+")
_QUOTED = re.compile(r"(: |-> )'([^']*)'")  # string annotations, shown unquoted


def doc(obj: Any) -> str:
    """``obj``'s own docstring, dedented; empty when it has none of its own."""
    text = obj.__doc__ if isinstance(obj, type) else inspect.getdoc(obj)
    if isinstance(obj, type):
        text = inspect.cleandoc(text) if text and "__doc__" in vars(obj) else ""
        if text.startswith(obj.__name__ + "("):  # a dataclass's generated docstring
            text = ""
    return (text or "").strip()


def signature(obj: Any, name: str) -> str:
    """``name(params)``, or ``name(...)`` where Python cannot tell."""
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        sig = "(...)"
    return name + _QUOTED.sub(r"\1\2", _ADDRESS.sub("", sig))


def code_block(text: str) -> str:
    return f"```python\n{text}\n```"


def members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties defined on ``cls`` or an ancestor inside taskq, in
    the order they are defined (the class's own first)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("taskq"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(value, property | staticmethod | classmethod) or inspect.isfunction(
                value
            ):
                yield name, value


def describe_member(cls: type, name: str, value: Any) -> list[str]:
    if isinstance(value, property):
        out = [f"#### `{cls.__name__}.{name}` (property)"]
        text = doc(value.fget) if value.fget is not None else ""
    else:
        func = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        prefix = "async " if inspect.iscoroutinefunction(func) else ""
        shown = signature(func, name)
        if not isinstance(value, staticmethod):
            shown = re.sub(r"\((self|cls)(, )?", "(", shown, count=1)
        out = [f"#### `{cls.__name__}.{name}`", "", code_block(prefix + "def " + shown)]
        text = doc(func)
    return [*out, "", text, ""] if text else [*out, ""]


def describe_class(name: str, cls: type) -> list[str]:
    out = [f"### `{name}`", ""]
    if issubclass(cls, BaseException):
        bases = ", ".join(b.__name__ for b in cls.__bases__)
        out += [f"An exception; derives from {bases}.", ""]
    elif issubclass(cls, enum.Enum):
        values = ", ".join(f"`{m.name}` = `{m.value!r}`" for m in cls)
        out += [f"Members: {values}.", ""]
    else:
        out += [code_block("class " + signature(cls, name).removesuffix(" -> None")), ""]
    text = doc(cls)
    if text:
        out += [text, ""]
    if issubclass(cls, BaseException | enum.Enum):
        return out
    for member, value in members(cls):
        out += describe_member(cls, member, value)
    return out


def describe(name: str, obj: Any) -> list[str]:
    if isinstance(obj, type):
        return describe_class(name, obj)
    if callable(obj):
        out = [f"### `{name}`", "", code_block("def " + signature(obj, name)), ""]
        text = doc(obj)
        return [*out, text, ""] if text else out
    return [f"### `{name}`", "", f"`{obj!r}`", ""]


def section(title: str, module: ModuleType) -> list[str]:
    out = [f"## {title}", ""]
    first = (module.__doc__ or "").strip().split("\n\n")[0]
    if first:
        out += [inspect.cleandoc(first), ""]
    names: list[str] = list(module.__all__)
    out += ["Contents: " + ", ".join(f"`{n}`" for n in names) + ".", ""]
    for name in names:
        out += describe(name, getattr(module, name))
    return out


def render() -> str:
    import taskq
    import taskq.aio

    lines = [HEADER, *section("`taskq`", taskq), *section("`taskq.aio`", taskq.aio)]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.rstrip() + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
