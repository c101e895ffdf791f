#!/usr/bin/env python3
"""A checkin over SSH/gitolite and over HTTP/Apache, against a local one (issue 15).

    sudo .venv/bin/python bench/hosting.py [--n 20]

Starts the same servers as tests/system (on 127.0.0.1, as a throwaway hosting account it
creates and removes; needs root), then times ``n`` checkins of one agent through the library
(:class:`RemoteVault` for a URL, :class:`Vault` for the path): each a whole-document checkin
changing one value, merged by the vault. Prints the median and quartiles of each, the ratio to
the local checkin, and how long the servers took to set up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gitvault import Vault  # noqa: E402
from gitvault.api.remote import RemoteVault  # noqa: E402
from tests.conftest import EXAMPLE, fast  # noqa: E402
from tests.system.servers import (  # noqa: E402
    ADMIN,
    SETUP_SECONDS,
    client_git,
    hosting_account,
    start_http,
    start_ssh,
)


def checkins(vault: Any, n: int) -> list[float]:
    """Seconds per checkin of agent ``alice``, each changing the roadmap's vision."""
    co = vault.checkout("alice", 3600)
    doc = co.document
    times = []
    for i in range(n):
        doc["roadmap"]["vision"] = f"vision {i}"
        start = time.perf_counter()
        vault.checkin("alice", doc, "bench", 0.5)
        times.append(time.perf_counter() - start)
    return times


def summary(name: str, times: list[float], local: float | None) -> str:
    q = statistics.quantiles(times, n=4)
    med = statistics.median(times)
    ratio = f"  ({med / local:.1f}x local)" if local else ""
    return (
        f"{name:<22} median {med * 1000:7.1f} ms   q1 {q[0] * 1000:7.1f}   q3 "
        f"{q[2] * 1000:7.1f}{ratio}"
    )


def multiplexed(ssh: Any, work: Path, n: int, local: float) -> str:
    """The same over SSH with a client keeping one connection open (``ControlMaster``), as
    docs/hosting.md suggests: only gitolite and git still start per command."""
    assert ssh.ssh_config is not None
    config = work / "ssh_config_mux"
    config.write_text(
        ssh.ssh_config.read_text()
        + f"Host *\n  ControlMaster auto\n  ControlPath {work}/mux-%r@%h-%p\n"
        "  ControlPersist 60\n"
    )
    old = os.environ["GIT_SSH_COMMAND"]
    os.environ["GIT_SSH_COMMAND"] = f"ssh -F {config}"
    try:
        ssh.vault("bench-mux")
        vault = RemoteVault(ssh.url(ADMIN, "bench-mux"), str(work / "cache-mux"))
        row = summary("ssh, ControlMaster", checkins(vault, n), local)
    finally:
        subprocess.run(
            ["ssh", "-F", str(config), "-O", "exit", f"{ADMIN}.gitvault.test"], capture_output=True
        )
        os.environ["GIT_SSH_COMMAND"] = old
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitvault-bench-") as tmp:
        work = Path(tmp)
        local_path = work / "local.git"
        Vault.init(local_path, EXAMPLE)
        fast(local_path)
        local = checkins(Vault.open(local_path), args.n)
        rows = [summary("local path (library)", local, None)]
        clients = work / "clients"
        clients.mkdir()
        with client_git(clients), hosting_account() as acct:
            t0 = time.monotonic()
            with start_ssh(acct, clients) as ssh, start_http(acct, clients) as http:
                setup = time.monotonic() - t0
                for server in (ssh, http):
                    server.vault("bench")
                    url = server.url(ADMIN, "bench")
                    times = checkins(RemoteVault(url, str(work / "cache")), args.n)
                    host = "gitolite" if server.kind == "ssh" else "apache"
                    rows.append(summary(f"{server.kind} ({host})", times, statistics.median(local)))
                rows.append(multiplexed(ssh, work, args.n, statistics.median(local)))
    print(f"checkins of one agent, n={args.n} each, fsync off, servers on 127.0.0.1")
    for row in rows:
        print(row)
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in SETUP_SECONDS.items())
    print(f"server set-up wall time: {parts} (both servers: {setup:.2f} s)")


if __name__ == "__main__":
    main()
