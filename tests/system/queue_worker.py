"""Child processes for ``tests/test_waitqueue.py``: writers that queue for an exclusive lease.

``rounds VAULT AGENT N``
    N times: ``checkout --exclusive --wait 300`` through the library, add 1 to the document's
    ``counter``, check in with the lease's token, release. Prints one JSON line per round:
    ``{"token", "seq"}``, where ``seq`` is the queue entry it waited in (null when it got the
    lease at once, with nobody queued).
``hold VAULT AGENT TTL``
    Takes an exclusive lease with TTL, prints ``held <token>``, then waits for stdin to close
    (the test kills it with SIGKILL instead).
"""

from __future__ import annotations

import json
import sys

from gitvault import Vault
from gitvault.model.waitqueue import Waiter


def rounds(path: str, agent: str, n: int) -> None:
    v = Vault.open(path)
    for _ in range(n):
        seen: list[int] = []

        def note(entry: Waiter, position: int, seen: list[int] = seen) -> None:
            seen.append(entry.seq)

        co = v.checkout(agent, 60, exclusive=True, wait=300, on_wait=note)
        doc = co.document
        doc["counter"] = int(doc.get("counter", 0)) + 1
        v.checkin(agent, doc, "queue-test", 0.5, lease=co.lease.token)
        v.release(agent)
        print(json.dumps({"token": co.lease.token, "seq": seen[0] if seen else None}), flush=True)


def hold(path: str, agent: str, ttl: int) -> None:
    co = Vault.open(path).checkout(agent, ttl, exclusive=True)
    print(f"held {co.lease.token}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "rounds":
        rounds(args[0], args[1], int(args[2]))
    elif cmd == "hold":
        hold(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"queue_worker: unknown command {cmd!r}")
