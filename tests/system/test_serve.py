"""`gitvault serve` over HTTP, as an attacker or a script would talk to it (no browser).

Writes must carry the token (a session cookie plus the CSRF field and a same-origin Origin, or
the X-Gitvault-Token header); anything less is refused and changes nothing. --read-only has no
write routes at all. The event stream delivers a checkin made by another process.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from gitvault import Vault
from gitvault.web.security import COOKIE, Guard

from .webtools import PERSON, ROOT, TOKEN, Server, demo, git, serve_with, server

__all__ = ["demo", "serve_with", "server"]  # fixtures

Reply = tuple[int, dict[str, str], str]
GUARD = Guard(TOKEN, "127.0.0.1", 0)  # the cookie and CSRF values do not depend on the port


def request(
    s: Server,
    method: str,
    path: str,
    body: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    host: str | None = None,
) -> Reply:
    netloc = urlsplit(s.url).netloc
    conn = http.client.HTTPConnection(netloc, timeout=30)
    head = {"Host": host or netloc, **(headers or {})}
    data = urlencode(body) if body is not None else None
    if data is not None:
        head["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, data, head)
    r = conn.getresponse()
    reply = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode())
    conn.close()
    return reply


def as_browser(s: Server, csrf: bool = True, origin: str | None = None) -> dict[str, str]:
    """The headers of a signed-in browser's form post (optionally forged)."""
    return {"Cookie": f"{COOKIE}={GUARD.session}", "Origin": origin or s.url}


def resolve_form(csrf: str | None = GUARD.csrf) -> dict[str, str]:
    form = {"id": "coder/1", "action": "theirs"}
    if csrf is not None:
        form["csrf"] = csrf
    return form


def unchanged(s: Server, head: str) -> bool:
    return git(s.vault, "rev-parse", "main").strip() == head and "refs/conflicts/" in git(
        s.vault, "for-each-ref", "refs/conflicts/"
    )


def main_of(s: Server) -> str:
    return git(s.vault, "rev-parse", "main").strip()


def test_a_resolve_without_signing_in_is_refused_and_changes_nothing(server: Server) -> None:
    head = main_of(server)
    status, _h, body = request(
        server, "POST", "/conflicts/resolve", resolve_form(), {"Origin": server.url}
    )
    assert status == 403 and "sign in" in body
    assert unchanged(server, head)


def test_a_cross_site_post_with_the_session_cookie_is_refused(server: Server) -> None:
    head = main_of(server)
    status, _h, body = request(
        server,
        "POST",
        "/conflicts/resolve",
        resolve_form(),
        as_browser(server, origin="http://evil.example"),
    )
    assert status == 403 and "cross-site" in body
    assert unchanged(server, head)


def test_a_post_with_the_cookie_but_no_origin_is_refused(server: Server) -> None:
    head = main_of(server)
    status, _h, _b = request(
        server,
        "POST",
        "/conflicts/resolve",
        resolve_form(),
        {"Cookie": f"{COOKIE}={GUARD.session}"},
    )
    assert status == 403
    assert unchanged(server, head)


def test_a_post_with_the_cookie_but_a_wrong_csrf_field_is_refused(server: Server) -> None:
    head = main_of(server)
    for form in (resolve_form(None), resolve_form("0" * 64)):
        status, _h, body = request(server, "POST", "/conflicts/resolve", form, as_browser(server))
        assert status == 403 and "CSRF" in body
    assert unchanged(server, head)


def test_a_get_never_resolves(server: Server) -> None:
    head = main_of(server)
    status, _h, _b = request(
        server, "GET", "/conflicts/resolve?id=coder/1&action=theirs", headers=as_browser(server)
    )
    assert status == 405
    assert unchanged(server, head)


def test_a_wrong_token_does_not_sign_in(server: Server) -> None:
    for path in ("/login?token=nope",):
        status, headers, _b = request(server, "GET", path)
        assert status == 403 and "set-cookie" not in headers
    status, headers, _b = request(
        server, "POST", "/login", {"token": "nope"}, {"Origin": server.url}
    )
    assert status == 403 and "set-cookie" not in headers


def test_signing_in_sets_a_strict_http_only_cookie(server: Server) -> None:
    status, headers, _b = request(
        server, "POST", "/login", {"token": TOKEN}, {"Origin": server.url}
    )
    assert status == 303
    cookie = headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_a_script_holding_the_token_resolves_as_the_reviewer(server: Server) -> None:
    status, headers, _b = request(
        server, "POST", "/conflicts/resolve", resolve_form(None), {"X-Gitvault-Token": TOKEN}
    )
    assert status == 303, _b
    head = main_of(server)
    assert headers["location"] == f"/commit/{head}"
    trailers = git(server.vault, "log", "-1", "--format=%(trailers:only,unfold)", "main")
    assert f"Agent-Id: {PERSON}\n" in trailers and "Source: review-ui\n" in trailers


def test_an_undecided_picks_resolve_is_refused_with_409_and_changes_nothing(server: Server) -> None:
    head = main_of(server)
    status, _h, body = request(
        server,
        "POST",
        "/conflicts/resolve",
        {"id": "coder/1", "action": "picks"},
        {"X-Gitvault-Token": TOKEN},
    )
    assert status == 409 and "/tasks/[id=T-003]/status" in body
    assert unchanged(server, head)


def test_an_unknown_host_header_is_refused(server: Server) -> None:
    status, _h, _b = request(server, "GET", "/timeline", host="rebound.example:80")
    assert status == 421


def test_pages_allow_scripts_from_this_server_only(server: Server) -> None:
    status, headers, _b = request(server, "GET", "/timeline")
    assert status == 200
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


def test_read_only_has_no_write_routes_and_no_write_buttons(
    serve_with: Callable[..., Server],
) -> None:
    s = serve_with("--read-only")
    head = main_of(s)
    status, _h, _b = request(
        s, "POST", "/conflicts/resolve", resolve_form(None), {"X-Gitvault-Token": TOKEN}
    )
    assert status in (404, 405)
    assert request(s, "GET", "/login")[0] == 404
    status, _h, body = request(s, "GET", "/conflicts")
    assert status == 200 and "coder/1" in body and "<button" not in body
    assert unchanged(s, head)


def test_a_bad_pointer_in_the_filters_is_a_400_page_not_a_traceback(server: Server) -> None:
    status, _h, body = request(server, "GET", "/timeline?path=tasks")
    assert status == 400 and "must start with" in body
    status, _h, body = request(server, "GET", "/commit/nosuchrev")
    assert status == 400 and "unknown revision" in body


def test_the_event_stream_delivers_a_checkin_made_by_another_process(server: Server) -> None:
    conn = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=30)
    conn.request("GET", "/events?key=tasks")
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("content-type", "").startswith("text/event-stream")
    assert r.readline() == b"retry: 2000\n"  # the stream is open and its watcher reads main
    v = Vault.open(server.vault)
    with v.lease("planner", ttl=60) as co:
        co.doc["tasks"][7]["status"] = "streamed"
        landed = co.commit(source="sse-test", confidence=0.5)
    lines: list[bytes] = []
    while not lines or not lines[-1].startswith(b"data: "):
        line = r.readline()
        if line.strip():
            lines.append(line.strip())
    conn.close()
    assert b"event: commit" in lines
    event = json.loads(lines[-1][len(b"data: ") :])
    assert event["commit"] == landed.commit and event["source"] == "sse-test"
    assert event["pointers"] == ["/tasks/[id=T-008]"]


def test_serve_stops_cleanly_on_ctrl_c(serve_with: Callable[..., Server]) -> None:
    s = serve_with()
    s.proc.send_signal(signal.SIGINT)
    _out, err = s.proc.communicate(timeout=30)
    assert s.proc.returncode == 0 and "Traceback" not in err


def test_serve_on_a_missing_vault_exits_1_with_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gitvault",
            "serve",
            "--vault",
            str(tmp_path / "none.git"),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("gitvault: ") and len(r.stderr.splitlines()) == 1
