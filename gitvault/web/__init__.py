"""``gitvault serve``: a review page for the people who run the agents.

Starlette + uvicorn + Jinja2 templates, a little plain JavaScript, no build step and nothing
loaded from elsewhere (templates and static files are package data). Pages: timeline, commit,
document (with blame on demand), conflicts (resolve or drop), leases; new checkins appear on
the timeline through server-sent events fed by :class:`gitvault.history.watch.Watcher`.

Safe by default: loopback only unless ``--host`` says otherwise, every write needs the token
printed at start-up and passes the CSRF checks of :mod:`gitvault.web.security`,
``--read-only`` removes the write routes, and a browser write is recorded as
``Agent-Id: <--name>`` with ``Source: review-ui``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from gitvault.api.vault import Vault
from gitvault.model.provenance import check_agent
from gitvault.web.security import is_loopback

__all__ = ["serve"]


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        from gitvault.errors import InputError

        raise InputError(
            f"cannot listen on {host}:{port}: {e.strerror}; pick another --port (0: any free one)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    vault_path: str,
    host: str = "127.0.0.1",
    port: int = 8770,
    read_only: bool = False,
    name: str | None = None,
    token: str | None = None,
    as_json: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM; prints where, and the token, at start-up."""
    import uvicorn

    from .app import Settings, wrapped
    from .security import Guard, new_token

    path = os.path.abspath(vault_path)
    Vault.open(path)  # a wrong path fails here, not at the first page
    person = check_agent(name or os.environ.get("USER") or "reviewer")
    generated = token is None
    secret = token or new_token()
    sock = _listen(host, port)
    actual = sock.getsockname()[1]
    settings = Settings(path, Guard(secret, host, actual), person, read_only)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{actual}/"
    config = uvicorn.Config(
        wrapped(settings),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
        access_log=False,
    )
    server = uvicorn.Server(config)
    settings.stopping = lambda: bool(server.should_exit)

    def stop(signum: int, frame: object) -> None:
        server.should_exit = True

    # Before anything is printed (whoever reads the address may stop the server at once): a
    # signal that comes before uvicorn has installed its own handlers stops it as soon as it
    # has started, and the signal uvicorn re-raises once it has shut down lands here, so the
    # command ends quietly with exit 0 instead of being killed or printing KeyboardInterrupt.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _announce(url, path, person, read_only, secret if generated else None, as_json)
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


def _announce(
    url: str, path: str, person: str, read_only: bool, token: str | None, as_json: bool
) -> None:
    """Where the server listens (JSON on stdout with --json), and the token if it made one."""
    if as_json:
        info = {
            "url": url,
            "port": int(url.rsplit(":", 1)[1].strip("/")),
            "host": url.split("//", 1)[1].rsplit(":", 1)[0].strip("[]"),
            "read_only": read_only,
            "name": person,
            "vault": path,
            "token": token,
        }
        print(json.dumps(info), flush=True)
    print(
        f"gitvault serve: {url} ({path}){' read-only' if read_only else ''}",
        file=sys.stderr,
        flush=True,
    )
    host = url.split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
    if not is_loopback(host):
        print(
            f"gitvault serve: listening on {host}, beyond this machine: whoever reaches it "
            "reads the whole memory",
            file=sys.stderr,
            flush=True,
        )
    if read_only:
        return
    where = "printed below" if token else "from --token / $GITVAULT_SERVE_TOKEN"
    print(
        f"writes are recorded as Agent-Id {person}, Source review-ui; token {where}",
        file=sys.stderr,
        flush=True,
    )
    if token:
        print(f"token: {token}\nsign in: {url}login?token={token}", file=sys.stderr, flush=True)
