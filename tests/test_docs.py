"""The documentation stays true: the generated reference is current, every relative
link resolves, and the container files name only commands taskq has, with no
password written down. (No Docker engine runs here: the files are read, not run.)"""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT, taskq_cmd

pytestmark = pytest.mark.faces("sync")

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
COMPOSE = ROOT / "docker-compose.yml"


def test_reference_is_generated_from_the_current_code() -> None:
    from taskq.tools.reference import render

    current = (DOCS / "reference.md").read_text()
    assert current == render(), (
        "docs/reference.md is stale: run `python -m taskq.tools.reference > docs/reference.md`"
    )


def test_the_reference_covers_every_public_name() -> None:
    import taskq
    import taskq.aio

    text = (DOCS / "reference.md").read_text()
    for name in [*taskq.__all__, *taskq.aio.__all__]:
        assert f"### `{name}`" in text, name


def outside_code(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def relative_links(page: Path, anchors: bool = False) -> list[str]:
    links = LINK.findall(outside_code(page.read_text()))
    skip = r"^[a-z][a-z0-9+.-]*:" if anchors else r"^[a-z][a-z0-9+.-]*:|^#"
    return [link for link in links if not re.match(skip, link)]


def slugs(page: Path) -> set[str]:
    """The anchors of ``page``'s headings, as GitHub makes them."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file(page: Path) -> None:
    broken = []
    for link in relative_links(page, anchors=True):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(link)
        elif anchor and target.suffix == ".md" and anchor not in slugs(target):
            broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files or headings: {broken}"


def test_the_docs_index_links_every_page() -> None:
    index = DOCS / "index.md"
    linked = {(index.parent / link.split("#")[0]).resolve() for link in relative_links(index)}
    unlinked = [p.relative_to(ROOT) for p in DOCS.rglob("*.md") if p != index and p not in linked]
    assert not unlinked, f"docs/index.md does not link {unlinked}"


# ---- docker-compose.yml and the Dockerfile ---------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def taskq_services() -> dict[str, dict[str, Any]]:
    """The services that run the image built from the Dockerfile (entrypoint taskq)."""
    return {n: s for n, s in compose()["services"].items() if "build" in s}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_writes_down_no_password() -> None:
    text = COMPOSE.read_text()
    assert not re.search(r"://[^/\s:@]+:[^@\s/]+@", text), "a URL carries a password"
    for name, service in compose()["services"].items():
        for key, value in environment(service).items():
            if "PASSWORD" in key.upper():
                assert re.fullmatch(r"\$\{[A-Z_]+(:?[?-][^}]*)?\}", value), (
                    f"{name}: {key} must come from the environment, not be written here"
                )
            if key == "TASKQ_DATABASE_URL":
                assert "@" not in value, f"{name}: the URL names a user or password"


def test_each_process_runs_as_its_own_role() -> None:
    services = compose()["services"]
    users = {n: environment(s).get("PGUSER") for n, s in services.items() if n != "postgres"}
    assert users["migrate"] == "taskq_owner"
    for name in ("worker", "scheduler", "serve"):
        assert users[name] not in (None, "postgres", "taskq_owner"), name
    assert len({users["worker"], users["scheduler"], users["serve"]}) == 3
    grants = {tuple(s["command"][2:4]) for n, s in services.items() if n.startswith("grant-")}
    assert grants == {
        ("worker", users["worker"]),
        ("scheduler", users["scheduler"]),
        ("operator", users["serve"]),
    }
    roles_script = services["roles"]["command"][-1]
    for user in users.values():
        if user != "postgres":
            assert user in roles_script, f"{user} is never created"


def test_every_taskq_service_command_is_a_valid_taskq_command() -> None:
    from taskq.cli import build_parser

    services = taskq_services()
    assert {"migrate", "worker", "scheduler", "serve"} <= set(services)
    for name, service in services.items():
        command = [str(c) for c in service["command"]]
        build_parser().parse_args(command)  # SystemExit on an unknown option or value
        done = subprocess.run(taskq_cmd(*command, "--help"), capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 0, f"{name}: taskq {' '.join(command)}: {done.stderr}"
        if command[0] == "worker":
            module, _, attr = command[1].partition(":")
            assert hasattr(importlib.import_module(module), attr), command[1]


def test_the_dockerfile_builds_a_non_root_taskq_image_with_the_server_extra() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"pip install \"?\.\[server\]", text)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["taskq"\]', text, re.M)
