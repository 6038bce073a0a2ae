"""The two faces of taskq under one test suite (import from tests: ``import faces``).

A behaviour test is written once against the synchronous API and runs twice: with
``taskq.Queuer`` and friends, and with ``taskq.aio.AsyncQueuer`` and friends behind
``SyncFace``, an adapter that runs each coroutine on one background event loop (one
per test session, ``session_loop()``) and hands back its result or its exception
unchanged. ``AsyncTasks.watch``, an async iterator, becomes an iterator.

The adapter adds nothing of its own to what it wraps: attribute reads go to the
asyncio object (``schema``, ``database``, ``worker_id``, ...), coroutine methods are
run on the loop, async generator methods become ``SyncIterator``s, and ``close()`` and
the context manager protocol map to ``await close()`` and ``async with``. The one
addition is ``listener()``, which the synchronous objects have and the asyncio objects
reach through ``database.listener()``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import taskq
import taskq.aio

T = TypeVar("T")

FACES = ("sync", "async")
"""``sync``: the objects of ``taskq``; ``async``: those of ``taskq.aio`` behind SyncFace."""

NAMES = ("Queuer", "Dequeuer", "Tasks", "Scheduler")


class Loop:
    """An event loop running forever on a daemon thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="taskq-test-event-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it: its result, or its exception
        raised here (the same object, so type, message and attributes are kept)."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("SyncFace called from its own event loop: that would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.run(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


_loop: Loop | None = None
_loop_lock = threading.Lock()


def session_loop() -> Loop:
    """The test session's background event loop, started on first use."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.loop.is_closed():
            _loop = Loop()
        return _loop


def close_session_loop() -> None:
    global _loop
    with _loop_lock:
        loop, _loop = _loop, None
    if loop is not None:
        loop.close()


async def _anext(agen: AsyncIterator[T]) -> T:
    return await agen.__anext__()


class SyncIterator(Iterator[T]):
    """An async iterator driven one item at a time on the loop."""

    def __init__(self, agen: AsyncIterator[T], loop: Loop) -> None:
        self._agen = agen
        self._loop = loop

    def __iter__(self) -> SyncIterator[T]:
        return self

    def __next__(self) -> T:
        try:
            return self._loop.run(_anext(self._agen))
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        aclose = getattr(self._agen, "aclose", None)
        if aclose is not None:
            self._loop.run(aclose())


class SyncFace:
    """The synchronous face of one ``taskq.aio`` object (see the module docstring)."""

    def __init__(self, obj: Any, loop: Loop) -> None:
        self.__dict__["_obj"] = obj
        self.__dict__["_loop"] = loop

    @property
    def wrapped(self) -> Any:
        """The asyncio object itself."""
        return self._obj

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        loop: Loop = self._loop
        if inspect.iscoroutinefunction(attr):

            @functools.wraps(attr)
            def call(*args: Any, **kwargs: Any) -> Any:
                return loop.run(attr(*args, **kwargs))

            return call
        if inspect.isasyncgenfunction(attr):

            @functools.wraps(attr)
            def iterate(*args: Any, **kwargs: Any) -> SyncIterator[Any]:
                return SyncIterator(attr(*args, **kwargs), loop)

            return iterate
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._obj, name, value)

    def __repr__(self) -> str:
        return f"SyncFace({self._obj!r})"

    def listener(self) -> Any:
        """What ``Client.listener()`` is to a synchronous object."""
        return self._loop.run(self._obj.database.listener())

    def close(self) -> None:
        self._loop.run(self._obj.close())

    def __enter__(self) -> SyncFace:
        entered = self._loop.run(self._obj.__aenter__())
        assert entered is self._obj
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.run(self._obj.__aexit__(*exc))


async def _construct(cls: type[T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    return cls(*args, **kwargs)


def async_class(name: str) -> type:
    return getattr(taskq.aio, f"Async{name}")  # type: ignore[no-any-return]


def build(face: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """A ``taskq.<name>`` (sync face) or a ``taskq.aio.Async<name>`` behind SyncFace,
    built inside the session loop (async face) from the same arguments."""
    if name not in NAMES:
        raise ValueError(f"no face for {name!r}")
    if face == "sync":
        return getattr(taskq, name)(*args, **kwargs)
    if face != "async":
        raise ValueError(f"unknown face {face!r}")
    loop = session_loop()
    return SyncFace(loop.run(_construct(async_class(name), args, kwargs)), loop)


class Maker:
    """Builds taskq objects for one face and closes them when the test ends
    (``make.Queuer(url, schema=...)``; each also works as a context manager)."""

    def __init__(self, face: str) -> None:
        self.face = face
        self.made: list[Any] = []

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        obj = build(self.face, name, *args, **kwargs)
        self.made.append(obj)
        return obj

    def Queuer(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - mirrors taskq.Queuer
        return self.build("Queuer", *args, **kwargs)

    def Dequeuer(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self.build("Dequeuer", *args, **kwargs)

    def Tasks(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self.build("Tasks", *args, **kwargs)

    def Scheduler(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self.build("Scheduler", *args, **kwargs)

    def close(self) -> None:
        """Close everything made (close is idempotent, so objects a test closed itself
        or used as a context manager are closed again, harmlessly)."""
        made, self.made = self.made, []
        for obj in reversed(made):
            obj.close()
