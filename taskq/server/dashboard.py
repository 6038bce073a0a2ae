"""The dashboard at ``/``: server-rendered pages (Jinja2) with a little plain
JavaScript, all shipped in the package (``templates/``, ``static/``): no build step,
nothing fetched from elsewhere.

Signing in stores the bearer token in an HttpOnly, SameSite=Strict cookie, checked on
every request like the API's header (a revoked token signs the page out). Every form
that changes something carries a CSRF token derived from the session's token, and a
POST whose Origin is another site is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from taskq.core.defaults import WORKER_STALE
from taskq.core.errors import TaskFinished, TaskNotFound, TaskqError
from taskq.core.fencing import parse_id
from taskq.core.types import Task, TaskStatus
from taskq.server import views
from taskq.server.auth import COOKIE, identify, state_of
from taskq.server.convert import decode_cursor, encode_cursor
from taskq.server.tokens import Principal, csrf_token

router = APIRouter(include_in_schema=False)
SESSION_MAX_AGE = 12 * 3600
PAGE = 50
RETRY_ALL_MAX = 1000
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")  # fmt: skip
STATUSES = [s.value for s in TaskStatus]


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("taskq.server", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(views.FILTERS)
    env.globals.update(query_string=views.query_string, statuses=STATUSES,
                       asset=_asset_version())  # fmt: skip
    return Jinja2Templates(env=env)


def _asset_version() -> str:
    digest = hashlib.sha256()
    for name in ("app.css", "app.js"):
        digest.update(resources.files("taskq.server").joinpath("static", name).read_bytes())
    return digest.hexdigest()[:10]


templates = _templates()


class Session:
    def __init__(self, principal: Principal, token: str) -> None:
        self.principal = principal
        self.csrf = csrf_token(token)

    def can(self, scope: str) -> bool:
        return self.principal.allows(scope)


async def _session(request: Request) -> Session | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    found = await identify(request, token)
    return None if found is None else Session(found, token)


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    if request.cookies.get(COOKIE):
        response.delete_cookie(COOKIE, path="/")
    return response


def _page(request: Request, name: str, session: Session | None, status: int = 200,
          **context: Any) -> HTMLResponse:  # fmt: skip
    s = state_of(request)
    path = request.url.path
    failed = path == "/tasks" and request.query_params.get("status") == "failed"
    nav = "/tasks?status=failed" if failed else "/tasks" if path.startswith("/tasks") else path
    notice = request.query_params.get("notice")
    text = views.NOTICES.get(notice or "", "")
    if "{n}" in text:
        text = text.format(n=int(request.query_params.get("n", "0") or 0))
    response = templates.TemplateResponse(
        request, name,
        {"session": session, "schema": s.db.schema, "notice": text, "path": path, "nav": nav,
         **context},
        status_code=status,
    )  # fmt: skip
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, max_num_fields=20).items()}


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return True  # not a browser's cross-site form: those always say where they come from
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _checked(request: Request) -> tuple[Session | None, dict[str, str], bool]:
    """The session, the form, and whether the form may act (same origin, CSRF token)."""
    session = await _session(request)
    form = await _form(request)
    ok = (session is not None and _same_origin(request)
          and hmac.compare_digest(form.get("csrf", ""), session.csrf))  # fmt: skip
    return session, form, ok


def _local(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


# ---- signing in and out -------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _page(request, "login.html", None, next=_local(request.query_params.get("next")))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    target = _local(form.get("next"))
    token = form.get("token", "").strip()
    found = await identify(request, token) if token and _same_origin(request) else None
    if found is None:
        return _page(request, "login.html", None, status=401, next=target,
                     error="That token is unknown or revoked.")  # fmt: skip
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, max_age=SESSION_MAX_AGE, path="/", httponly=True,
                        samesite="strict", secure=state_of(request).config.cookie_secure)  # fmt: skip
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session, _, ok = await _checked(request)
    response = RedirectResponse("/login?notice=signed-out" if ok or session is None else "/",
                                status_code=303)  # fmt: skip
    if ok or session is None:
        response.delete_cookie(COOKIE, path="/")
    return response


# ---- pages ----------------------------------------------------------------------------------


@router.get("/")
async def overview(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login(request)
    s = state_of(request)
    from taskq.server.state import THROUGHPUT_MINUTES

    counts = await s.counts.get()
    series = views.throughput(await s.throughput.get(), THROUGHPUT_MINUTES)
    rows = await s.db.query(s.stmts.workers.list_workers(WORKER_STALE, 200))
    failed = await s.db.query(s.stmts.listing.list_tasks(limit=5, statuses=["failed"]), read=True)
    totals = {k: sum(q[k] for q in counts) for k in ("waiting", "running", "finished",
                                                     "failed", "cancelled")}  # fmt: skip
    return _page(request, "overview.html", session, queues=counts, series=series,
                 totals=totals, minutes=THROUGHPUT_MINUTES, failed=failed,
                 live_workers=sum(1 for r in rows if r["alive"]))  # fmt: skip


@router.get("/tasks")
async def task_list(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login(request)
    s = state_of(request)
    q = request.query_params
    params = {"queue": q.get("queue") or None, "type": q.get("type") or None,
              "status": q.get("status") if q.get("status") in STATUSES else None}  # fmt: skip
    before = seq = None
    if q.get("cursor"):
        try:
            before, seq = decode_cursor(q["cursor"])
        except ValueError:
            pass
    for key in ("queue", "type"):
        if params[key] is not None and "\x00" in str(params[key]):
            params[key] = None
    found: list[Task] = await s.db.query(s.stmts.listing.list_tasks(
        limit=PAGE + 1, queue=params["queue"], type=params["type"],
        statuses=[params["status"]] if params["status"] else None, before=before,
        before_seq=seq), read=True)  # fmt: skip
    older = encode_cursor(found[PAGE - 1]) if len(found) > PAGE else None
    queues = sorted(c["queue"] for c in await s.counts.get())
    return _page(request, "tasks.html", session, tasks=found[:PAGE], params=params,
                 older=older, paged=bool(q.get("cursor")), queues=queues)  # fmt: skip


@router.get("/tasks/{task_id}")
async def task_page(request: Request, task_id: str) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login(request)
    try:
        task = await state_of(request).tasks.get(task_id)
    except TaskNotFound:
        return _page(request, "missing.html", session, status=404, what=f"task {task_id[:80]}")
    return _page(request, "task.html", session, task=task, progress=views.progress_of(task))


@router.get("/schedules")
async def schedules_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login(request)
    found = await state_of(request).scheduler.list_schedules()
    return _page(request, "schedules.html", session, schedules=found)


@router.get("/workers")
async def workers_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login(request)
    s = state_of(request)
    rows = await s.db.query(s.stmts.workers.list_workers(WORKER_STALE, 200))
    return _page(request, "workers.html", session, workers=rows)


# ---- actions (write scope) ------------------------------------------------------------------


def _back(path: str, notice: str, **extra: Any) -> RedirectResponse:
    sep = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{sep}notice={notice}" + "".join(
        f"&{k}={quote(str(v))}" for k, v in extra.items()), status_code=303)  # fmt: skip


async def _act(request: Request, task_id: str, action: str) -> Response:
    session, _, ok = await _checked(request)
    if session is None:
        return _to_login(request)
    try:
        tid = parse_id(task_id)
    except TaskNotFound:
        return _page(request, "missing.html", session, status=404, what=f"task {task_id[:80]}")
    page = f"/tasks/{tid}"
    if not ok:
        return _back(page, "stale-form")
    if not session.can("write"):
        return _back(page, "not-allowed")
    tasks = state_of(request).tasks
    try:
        await (tasks.cancel(tid) if action == "cancel" else tasks.retry(tid))
    except TaskNotFound:
        return _page(request, "missing.html", session, status=404, what=f"task {tid}")
    except TaskFinished:
        return _back(page, "already-ended")
    except TaskqError:
        return _back(page, "not-retryable")
    return _back(page, "cancelled" if action == "cancel" else "retried")


@router.post("/tasks/{task_id}/cancel")
async def cancel(request: Request, task_id: str) -> Response:
    return await _act(request, task_id, "cancel")


@router.post("/tasks/{task_id}/retry")
async def retry(request: Request, task_id: str) -> Response:
    return await _act(request, task_id, "retry")


@router.post("/retry-failed")
async def retry_failed(request: Request) -> Response:
    """Retry every failed task matching the form's queue and type (up to 1,000)."""
    session, form, ok = await _checked(request)
    if session is None:
        return _to_login(request)
    queue, type_ = form.get("queue") or None, form.get("type") or None
    page = "/tasks" + views.query_string({"status": "failed", "queue": queue, "type": type_})
    if not ok:
        return _back(page, "stale-form")
    if not session.can("write"):
        return _back(page, "not-allowed")
    s = state_of(request)
    done = 0
    tried: set[str] = set()
    while len(tried) < RETRY_ALL_MAX:
        batch: list[Task] = await s.db.query(s.stmts.listing.list_tasks(
            limit=200, queue=queue, type=type_, statuses=["failed"]))  # fmt: skip
        fresh = [t for t in batch if t.id not in tried][: RETRY_ALL_MAX - len(tried)]
        if not fresh:
            break
        for t in fresh:
            tried.add(t.id)
            try:
                await s.tasks.retry(t.id)
                done += 1
            except TaskqError:
                pass  # it changed meanwhile
    return _back(page, "retried-all", n=done)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(packages=[("taskq.server", "static")]), name="static")
