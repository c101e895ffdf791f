"""The review page's routes: parse the request, call the library, render a template.

Each thread Starlette runs sync routes in has its own handle on the vault (pygit2
repositories are not shared between threads); refs are read from disk on every call, so each
page shows the vault as it is now.
Templates are Jinja2 with autoescape on: a memory value is always text, never markup, and the
Content-Security-Policy allows scripts from this server only, so even a value that escaped
escaping could not run.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gitvault import history
from gitvault.api.vault import Vault
from gitvault.core import pointers
from gitvault.errors import ConflictError, GitVaultError, InputError, NotAllowed, VaultNotFound
from gitvault.git.storage import Store
from gitvault.history import summary
from gitvault.history.timeline import Filters, revision_at
from gitvault.history.timeline import page as timeline_page
from gitvault.history.watch import Change, Selection, Watcher
from gitvault.model import changes

from . import security, views

PER_PAGE = 50
SOURCE = "review-ui"  # the Source: of every write made in the browser
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HERE = resources.files(__package__)


class Settings:
    """What the server was started with."""

    def __init__(
        self,
        vault_path: str,
        guard: security.Guard,
        name: str,
        read_only: bool,
        interval: float = 0.25,
    ) -> None:
        self.vault_path, self.guard, self.name = vault_path, guard, name
        self.read_only, self.interval = read_only, interval
        self.stopping: Callable[[], bool] = lambda: False


class Guarded:
    """ASGI middleware: the Host check (DNS rebinding) and the security headers."""

    def __init__(self, app: ASGIApp, guard: security.Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.guard.host_ok(Request(scope)):
            await Response("unknown Host header", 421, media_type="text/plain")(
                scope, receive, send
            )
            return

        started = time.perf_counter()

        async def headed(message: Message) -> None:
            if message["type"] == "http.response.start":
                spent = (time.perf_counter() - started) * 1000  # the page is rendered by now
                extra = [
                    (b"server-timing", f"app;dur={spent:.1f}".encode()),
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, headed)


MAX_PATCH_CHARS = 200_000  # a larger patch (an import) is cut on the page; the file is whole


def _shortened(text: str) -> str:
    if len(text) <= MAX_PATCH_CHARS:
        return text
    return (
        text[:MAX_PATCH_CHARS] + f"\n… ({len(text) - MAX_PATCH_CHARS:,} more characters: "
        "see the file)"
    )


def _status_of(e: GitVaultError) -> int:
    if isinstance(e, ConflictError):
        return 409
    if isinstance(e, NotAllowed):
        return 403
    if isinstance(e, VaultNotFound):
        return 404
    return 400


def create_app(settings: Settings) -> Starlette:
    """The Starlette app for one vault."""
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["render"] = summary.render
    env.filters["short"] = lambda c: (c or "")[:12]
    env.globals["ago"] = views.ago

    handles = threading.local()

    def vault() -> Vault:
        """This thread's handle on the vault, kept between requests.

        Refs, leases and conflicts are read from disk on every call, so a page shows the
        vault as it is now; what the handle keeps is libgit2's cache of objects, which never
        change (on 10,000 commits, a cold walk back through the history costs ~0.1 s).
        """
        held: Vault | None = getattr(handles, "vault", None)
        if held is None:
            held = handles.vault = Vault.open(settings.vault_path)
        return held

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        signed_in = settings.guard.signed_in(request)
        base = {
            "request": request,
            "read_only": settings.read_only,
            "name": settings.name,
            "signed_in": signed_in,
            "csrf": settings.guard.csrf if signed_in else "",
            "nav": name.removesuffix(".html"),
        }
        html = env.get_template(name).render(**base, **context)
        return HTMLResponse(html, status)

    def errors(fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
        @functools.wraps(fn)
        def wrapper(request: Request) -> Response:
            try:
                return fn(request)
            except GitVaultError as e:
                report = e.to_json()
                return page(
                    request,
                    "error.html",
                    _status_of(e),
                    message=str(e),
                    conflicts=report.get("conflicts", []),
                )

        return wrapper

    def q(request: Request, name: str) -> str | None:
        value = request.query_params.get(name, "").strip()
        return value or None

    # -- pages ----------------------------------------------------------------------------
    def home(request: Request) -> Response:
        return RedirectResponse("/timeline", 303)

    @errors
    def timeline(request: Request) -> Response:
        filters = {k: q(request, k) for k in ("agent", "source", "key", "path", "since", "until")}
        try:
            number = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            raise InputError("page must be a number, e.g. page=2") from None
        v = vault()
        shown = timeline_page(v.store, Filters(**filters), (number - 1) * PER_PAGE, PER_PAGE)
        query = {k: val for k, val in filters.items() if val}

        def link(n: int) -> str:
            return "/timeline?" + urlencode({**query, "page": n})

        return page(
            request,
            "timeline.html",
            entries=shown.entries,
            filters=filters,
            page_number=number,
            prev=link(number - 1) if number > 1 else None,
            next=link(number + 1) if shown.more else None,
            live=number == 1 and not filters["until"],
            events="/events?" + urlencode(query),
            head=v.head(),
        )

    @errors
    def commit(request: Request) -> Response:
        v = vault()
        c = v.store.resolve(request.path_params["commit"])
        index = changes.index_of(c.message) if c.parent_ids else None
        entry = history.entry_of(v.store, c, index)
        lines = summary.between(v.store, c.parents[0] if c.parents else None, c)
        sides = summary.merge_sides(v.store, c, entry.strategy)
        patch = v.diff(None, str(c.id)).patch
        return page(
            request,
            "commit.html",
            entry=entry,
            lines=lines[: summary.MAX_LINES],
            more=max(0, len(lines) - summary.MAX_LINES),
            sides=sides,
            patch=_shortened(json.dumps(patch, indent=2, ensure_ascii=False)),
            message=c.message,
            pointers=changes.raw_lines(c.message),
        )

    @errors
    def patch_json(request: Request) -> Response:
        d = vault().diff(None, request.path_params["commit"])
        return JSONResponse(d.patch)

    @errors
    def document(request: Request) -> Response:
        v = vault()
        rev, at, path = q(request, "rev"), q(request, "at"), q(request, "path") or ""
        try:
            offset = max(0, int(request.query_params.get("offset", "0")))
        except ValueError:
            raise InputError("offset must be a number") from None
        c = revision_at(v.store, rev, at)
        value = v.show(str(c.id), path=path or None)
        entry = history.entry_of(v.store, c)
        crumbs = []
        tokens = pointers.split(path) if path else []
        for i in range(len(tokens)):
            crumbs.append((tokens[i], pointers.join(tokens[: i + 1])))
        return page(
            request,
            "document.html",
            rows=views.document_rows(value, path, offset),
            commit=str(c.id),
            entry=entry,
            rev=rev or "",
            at=at or "",
            path=path,
            crumbs=crumbs,
            is_head=str(c.id) == v.head(),
        )

    def blame_api(request: Request) -> Response:
        path = request.query_params.get("path", "")
        try:
            entries = vault().blame(path, q(request, "rev"))
        except GitVaultError as e:
            return JSONResponse(e.to_json(), _status_of(e))
        return JSONResponse([e.to_json() for e in entries[:200]])

    @errors
    def conflicts(request: Request) -> Response:
        return page(request, "conflicts.html", pending=vault().pending_conflicts())

    @errors
    def leases(request: Request) -> Response:
        v = vault()
        now = v.clock()
        status = v.status()
        return page(
            request,
            "leases.html",
            leases=status.leases,
            now=now,
            activity=views.activity(v),
            conflicts=status.conflicts,
        )

    # -- sign-in and writes ---------------------------------------------------------------
    def login(request: Request) -> Response:
        guard = settings.guard
        given = request.query_params.get("token")
        if given is not None:
            if not guard.token_ok(given):
                return page(request, "login.html", 403, failed=True)
            return _signed(RedirectResponse("/conflicts", 303))
        return page(request, "login.html", failed=False)

    async def login_post(request: Request) -> Response:
        form = await request.form()
        token = form.get("token")
        if not settings.guard.same_origin(request):
            return page(request, "login.html", 403, failed=True)
        if not isinstance(token, str) or not settings.guard.token_ok(token):
            return page(request, "login.html", 403, failed=True)
        return _signed(RedirectResponse("/conflicts", 303))

    def _signed(response: Response) -> Response:
        response.set_cookie(
            security.COOKIE, settings.guard.session, httponly=True, samesite="strict", path="/"
        )
        return response

    async def write(request: Request) -> tuple[dict[str, str], Response | None]:
        """The form of a write, or the refusal to send back."""
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        why = settings.guard.write_refusal(request, form.get(security.CSRF_FIELD))
        if why is not None:
            return form, page(request, "error.html", 403, message=why, conflicts=[])
        return form, None

    async def resolve(request: Request) -> Response:
        form, refused = await write(request)
        if refused is not None:
            return refused
        conflict_id = form.get("id", "")
        action = form.get("action", "")
        picks = {
            k.removeprefix("pick:"): v
            for k, v in form.items()
            if k.startswith("pick:") and v in ("ours", "theirs")
        }

        def run() -> Response:
            v = vault()
            if action == "drop":
                v.drop_conflict(conflict_id)
                return RedirectResponse("/conflicts", 303)
            if action not in ("ours", "theirs", "picks"):
                raise InputError(f"unknown action {action!r}: ours, theirs, picks or drop")
            result = v.resolve(
                conflict_id,
                take=None if action == "picks" else action,
                picks=picks if action == "picks" else None,
                agent=settings.name,
                source=SOURCE,
            )
            return RedirectResponse(f"/commit/{result.commit}", 303)

        return await anyio.to_thread.run_sync(errors(lambda _r: run()), request)

    async def logout(request: Request) -> Response:
        _form, refused = await write(request)
        if refused is not None:
            return refused
        response = RedirectResponse("/timeline", 303)
        response.delete_cookie(security.COOKIE, path="/")
        return response

    # -- the live feed --------------------------------------------------------------------
    async def events(request: Request) -> Response:
        try:
            selection = Selection(q(request, "key"), q(request, "path"))
            watcher = Watcher(
                Store.open(settings.vault_path), selection, q(request, "since"), settings.interval
            )
        except GitVaultError as e:
            return JSONResponse(e.to_json(), _status_of(e))
        agent, source = q(request, "agent"), q(request, "source")

        def wanted(change: Change) -> bool:
            return (agent is None or change.entry.agent == agent) and (
                source is None or change.entry.source == source
            )

        async def stream() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            pinged = time.monotonic()
            while not settings.stopping():
                for change in watcher.poll():
                    if wanted(change):
                        data = json.dumps(change.to_json(), ensure_ascii=False)
                        yield f"event: commit\nid: {change.commit}\ndata: {data}\n\n"
                if time.monotonic() - pinged > 15:
                    pinged = time.monotonic()
                    yield ": ping\n\n"
                await anyio.sleep(settings.interval)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    routes = [
        Route("/", home),
        Route("/timeline", timeline),
        Route("/commit/{commit}", commit),
        Route("/commit/{commit}/patch.json", patch_json),
        Route("/document", document),
        Route("/api/blame", blame_api),
        Route("/conflicts", conflicts),
        Route("/leases", leases),
        Route("/events", events),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    if not settings.read_only:
        routes += [
            Route("/login", login),
            Route("/login", login_post, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/conflicts/resolve", resolve, methods=["POST"]),
        ]
    app = Starlette(routes=routes)
    app.state.settings = settings
    return app


def wrapped(settings: Settings) -> ASGIApp:
    """The app behind its guard."""
    return Guarded(create_app(settings), settings.guard)
