"""One writer process of ``tests/test_elle.py``.

``python tests/system/elle_worker.py VAULT AGENT WRITES HISTORY GO``

Waits until the file GO exists (so that every worker starts at once, imports done), then makes
WRITES writes to the vault as AGENT, each one a whole read-modify-write under a shared lease:
checkout; append ``{"id": "AGENT-i"}`` to the id-array ``log`` and add one to
``counters[AGENT]``; checkin with the lease's token. A conflict (exit 3) or a vault that kept
changing under the checkin (``VaultBusy``) is not acknowledged: the worker checks out again and
retries. Only once a checkin has returned does it append the acknowledged write to HISTORY as
one JSON line (write, flush, fsync):

    {"agent", "item", "i", "commit", "merged", "counter", "t_checkout", "t_ack", "attempts"}

``t_checkout`` is when the read of the successful attempt began, ``t_ack`` when its checkin
returned (``time.time()`` on one machine). The last line is a summary: ``{"done": true,
"conflicts", "busy", "merged", "seconds", "release_error", "busy_messages"}`` (the lease is
released after the last write; an error doing so is reported, not raised).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import IO, Any

from gitvault import Vault
from gitvault.errors import ConflictError, GitVaultError, VaultBusy

MAX_ATTEMPTS = 1000


def record(out: IO[str], entry: dict[str, Any]) -> None:
    out.write(json.dumps(entry, ensure_ascii=False) + "\n")
    out.flush()
    os.fsync(out.fileno())


def run(vault_path: str, agent: str, writes: int, history: str, go: str) -> None:
    v = Vault.open(vault_path)
    rng = random.Random(f"{agent}-{os.getpid()}")
    while not os.path.exists(go):
        time.sleep(0.005)
    start = time.monotonic()
    conflicts = busy = merged = 0
    busy_messages: list[str] = []
    with open(history, "a", encoding="utf-8") as out:
        for i in range(writes):
            item = f"{agent}-{i}"
            attempts = 0
            while True:
                attempts += 1
                if attempts > MAX_ATTEMPTS:
                    raise SystemExit(f"{agent}: write {i} unacknowledged after {MAX_ATTEMPTS}")
                t_checkout = time.time()
                co = v.checkout(agent, 600)
                doc = co.document
                log = doc.setdefault("log", [])
                log.append({"id": item})
                counters = doc.setdefault("counters", {})
                counter = int(counters.get(agent, 0)) + 1
                counters[agent] = counter
                try:
                    result = v.checkin(
                        agent, doc, "elle", 0.5, f"write {i} of {agent}", lease=co.lease.token
                    )
                except ConflictError:
                    conflicts += 1
                except VaultBusy as e:
                    busy += 1
                    busy_messages.append(str(e))
                else:
                    break
                time.sleep(rng.uniform(0.0, 0.02))
            merged += int(result.merged)
            record(
                out,
                {
                    "agent": agent,
                    "item": item,
                    "i": i,
                    "commit": result.commit,
                    "merged": result.merged,
                    "counter": counter,
                    "t_checkout": t_checkout,
                    "t_ack": time.time(),
                    "attempts": attempts,
                },
            )
        seconds = round(time.monotonic() - start, 3)
        try:
            v.release(agent)
            release_error = None
        except GitVaultError as e:  # reported by the test, after the history checks
            release_error = f"{type(e).__name__}: {e}"
        record(
            out,
            {
                "done": True,
                "agent": agent,
                "conflicts": conflicts,
                "busy": busy,
                "merged": merged,
                "seconds": seconds,
                "release_error": release_error,
                "busy_messages": busy_messages[:5],
            },
        )


if __name__ == "__main__":
    path, name, count, history_file, go_file = sys.argv[1:6]
    run(path, name, int(count), history_file, go_file)
