"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright):
sign in, see a queue, watch a task's progress bar move live, retry a failed task,
retry all failed tasks of a queue, sign out; no console errors. Screenshots are kept
in build/screenshots/ (ignored by git)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT
from support.serve import CHROMIUM_ARGS, Server, chromium, make_token

import taskq

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

SHOTS = ROOT / "build" / "screenshots"


@pytest.fixture(scope="module")
def server(database_url: str, schema: str) -> Iterator[Server]:
    s = Server(database_url, schema)
    yield s
    assert s.stop() == 0
    assert not any("Traceback" in line for line in s.stderr), "".join(s.stderr)


@pytest.fixture(scope="module")
def browser_page() -> Iterator[tuple[object, list[str]]]:
    path = chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=path, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1360, "height": 900}, timezone_id="America/New_York",
            locale="en-US",
        )  # fmt: skip
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", lambda d: d.accept())
        try:
            yield page, problems
        finally:
            context.close()


def shot(page: object, name: str) -> Path:
    target = SHOTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)  # type: ignore[attr-defined]
    return target


@pytest.mark.timeout(600)
@pytest.mark.faces("sync")  # the producer's face is not what this test is about
def test_the_dashboard_end_to_end(
    server: Server, browser_page: tuple[object, list[str]], database_url: str, schema: str,
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str,
) -> None:  # fmt: skip
    page, problems = browser_page
    pg: object = page
    token = make_token(database_url, schema, "write", "browser")
    watched = queuer.enqueue(queue=queue_name, type="video.encode", title="Encode talk.mp4",
                             spec={"file": "talk.mp4"})  # fmt: skip

    # signed out: every page sends us to sign in
    pg.goto(f"{server.base}/tasks")  # type: ignore[attr-defined]
    assert "/login" in pg.url  # type: ignore[attr-defined]
    shot(pg, "01-sign-in")
    pg.fill("#token", "taskq_000000000000_" + "x" * 43)  # type: ignore[attr-defined]
    pg.click("button[type=submit]")  # type: ignore[attr-defined]
    assert "unknown or revoked" in pg.inner_text(".alert")  # type: ignore[attr-defined]
    problems.clear()  # the 401 of a wrong token is logged by the browser as an error
    pg.fill("#token", token)  # type: ignore[attr-defined]
    pg.click("button[type=submit]")  # type: ignore[attr-defined]
    pg.wait_for_url(f"{server.base}/tasks")  # type: ignore[attr-defined]
    cookie = next(c for c in pg.context.cookies() if c["name"] == "taskq_session")  # type: ignore[attr-defined]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # the overview lists the queue we enqueued into, with its counts
    pg.goto(f"{server.base}/")  # type: ignore[attr-defined]
    row = pg.locator("table.grid tr", has_text=queue_name)  # type: ignore[attr-defined]
    assert row.count() == 1 and "1" in row.inner_text()
    shot(pg, "02-overview")

    # a task's progress bar moves as the worker reports progress, without a reload
    pg.goto(f"{server.base}/tasks/{watched.id}")  # type: ignore[attr-defined]
    pg.evaluate("window.__same_page = true")  # type: ignore[attr-defined]
    claimed = dequeuer.dequeue(queue_name, timeout=10)
    assert claimed is not None and claimed.id == watched.id
    bar = ".progress-card progress"
    for fraction in (0.2, 0.55, 0.8):
        dequeuer.heartbeat(claimed, {"percent": fraction, "status": f"encoding {fraction:.0%}"})
        pg.wait_for_function(  # type: ignore[attr-defined]
            "([sel, v]) => { const b = document.querySelector(sel);"
            " return b && Math.abs(b.value - v) < 1e-6; }",
            arg=[bar, fraction],
            timeout=20000,
        )
    assert pg.evaluate("window.__same_page === true")  # type: ignore[attr-defined]
    assert "80%" in pg.inner_text(".progress-card")  # type: ignore[attr-defined]
    assert "running" in pg.inner_text(".head-actions").lower()  # type: ignore[attr-defined]
    assert "EST" in pg.inner_text("[data-started]")  # type: ignore[attr-defined]
    shot(pg, "03-task-progress")
    # times are shown in the viewer's time zone
    assert "EST" in pg.inner_text(".kv")  # type: ignore[attr-defined]

    # it fails: the page shows the error and a Retry button, which puts it back
    dequeuer.fail(claimed, None, error="ffmpeg exited with status 1: invalid NAL unit")
    pg.wait_for_selector("#retry", timeout=20000)  # type: ignore[attr-defined]
    assert "invalid NAL unit" in pg.inner_text(".card-error")  # type: ignore[attr-defined]
    shot(pg, "04-task-failed")
    pg.click("#retry")  # type: ignore[attr-defined]
    pg.wait_for_selector(".notice")  # type: ignore[attr-defined]
    assert "back in waiting" in pg.inner_text(".notice")  # type: ignore[attr-defined]
    assert tasks.get(watched.id).status is taskq.TaskStatus.WAITING

    # retry all failed tasks of the queue from the failed list
    bulk = f"{queue_name}-thumbs"
    for i in range(3):
        queuer.enqueue(queue=bulk, type="thumb", spec={"i": i})
    for _ in range(3):
        t = dequeuer.dequeue(bulk, timeout=10)
        assert t is not None
        dequeuer.fail(t, None, error="out of disk space")
    pg.goto(f"{server.base}/tasks?status=failed&queue={bulk}")  # type: ignore[attr-defined]
    assert pg.locator("table.tasks tbody tr").count() == 3  # type: ignore[attr-defined]
    shot(pg, "05-failed-list")
    pg.click("#retry-all")  # type: ignore[attr-defined]
    pg.wait_for_selector(".notice")  # type: ignore[attr-defined]
    assert "3 failed task(s)" in pg.inner_text(".notice")  # type: ignore[attr-defined]
    assert tasks.list(queue=bulk, status="failed") == []

    # a form without the CSRF token, or from another site, changes nothing
    victim = queuer.enqueue(queue=queue_name, type="victim")
    r = pg.request.post(f"{server.base}/tasks/{victim.id}/cancel", form={"csrf": "nope"})  # type: ignore[attr-defined]
    assert "notice=stale-form" in r.url
    page_html = pg.content()  # type: ignore[attr-defined]
    assert page_html
    r = pg.request.post(f"{server.base}/tasks/{victim.id}/cancel", form={"csrf": _csrf(pg)},  # type: ignore[attr-defined]
                        headers={"Origin": "https://evil.example"})  # fmt: skip
    assert "notice=stale-form" in r.url
    assert tasks.get(victim.id).status is taskq.TaskStatus.WAITING

    # sign out
    pg.goto(f"{server.base}/")  # type: ignore[attr-defined]
    pg.click("text=Sign out")  # type: ignore[attr-defined]
    pg.wait_for_url("**/login**")  # type: ignore[attr-defined]
    assert "Signed out" in pg.inner_text(".notice")  # type: ignore[attr-defined]
    pg.goto(f"{server.base}/tasks")  # type: ignore[attr-defined]
    assert "/login" in pg.url  # type: ignore[attr-defined]
    assert problems == [], problems


def _csrf(page: object) -> str:
    page.goto(page.url.split("/tasks")[0] + "/")  # type: ignore[attr-defined]
    value: str = page.get_attribute("input[name=csrf]", "value")  # type: ignore[attr-defined]
    return value


def test_screenshots_exist() -> None:
    if not SHOTS.exists():
        pytest.skip("the browser test did not run")
    assert {p.name for p in SHOTS.glob("*.png")} >= {"01-sign-in.png", "03-task-progress.png"}
