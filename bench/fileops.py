#!/usr/bin/env python3
"""What a checkout + checkin cycle asks of the file system, gitvault against the old design.

    python bench/fileops.py [--cycles 50] [--items 1000]

Why: on a busy vault the writers' turn sets the throughput, and what it holds is file
creation (about 0.3-0.6 ms each on the 2-core VM), not CPU. Runs one agent's cycles of each
design under ``strace -f`` (file syscalls only) and prints, per cycle, the files created,
renamed, linked and unlinked, the flushes, and the appends (reflogs); the last cycle ends
with a release. Needs ``strace``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SYSCALLS = (
    "openat,rename,renameat,renameat2,link,linkat,unlink,unlinkat,mkdir,syncfs,fsync,fdatasync"
)
START, END = "gitvault-fileops-start", "gitvault-fileops-end"
_CALL = re.compile(r"^\d+\s+(\w+)\((.*)$")
FLOCKS = re.compile(r"gitvault-(turn|writers|boot)\"")  # opened to flock, not created

CHILD = """
import os, sys
sys.path.insert(0, {bench!r})
import scenarios
from pathlib import Path
work, design, items, cycles = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if design == "gitvault":
    scenarios.make_vault(work / "v.git", scenarios.make_document(items), fsync=True)
    store = scenarios.LibraryStore(work / "v.git")
else:
    from alternatives import OldFileStore
    store = OldFileStore(work / "old", True)
    scenarios.seed(store, scenarios.make_document(items))
def mark(name):  # a failed open of a name that does not exist: a line in the trace
    try:
        open(os.path.join(str(work), name)).close()
    except OSError:
        pass
scenarios.cycle_samples(store, 1)  # warm: first lease, caches
mark({start!r})
scenarios.cycle_samples(store, cycles - 1)  # n - 1 timed cycles after its own warm-up
mark({end!r})
"""


def count(trace: str, cycles: int) -> dict[str, float]:
    """Per-cycle counts between the two markers of a ``strace -o`` file."""
    lines = Path(trace).read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if START in line or END in line]
    c: collections.Counter[str] = collections.Counter()
    for line in lines[marks[0] + 1 : marks[-1]]:
        m = _CALL.match(line)
        if m is None:
            continue
        name, args = m.groups()
        failed = "= -1" in line
        if name == "openat":
            if "O_APPEND" in args:
                c["appends (reflogs)"] += 1
            elif "O_CREAT" in args and not failed and not FLOCKS.search(args):
                c["files created"] += 1
            elif not failed:
                c["opens"] += 1
        elif not failed:
            c[{"renameat": "rename", "renameat2": "rename", "linkat": "link"}.get(name, name)] += 1
    return {k: round(v / cycles, 1) for k, v in sorted(c.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--items", type=int, default=1000)
    args = parser.parse_args()
    if shutil.which("strace") is None:
        sys.exit("fileops: strace is not installed (apt-get install strace)")
    bench = str(Path(__file__).resolve().parent)
    code = CHILD.format(bench=bench, start=START, end=END)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="gitvault-fileops-") as tmp:
        for design in ("gitvault", "old design"):
            work = Path(tmp) / design.replace(" ", "-")
            work.mkdir()
            trace = str(work / "trace")
            strace = ["strace", "-f", "-qq", "-e", f"trace={SYSCALLS}", "-o", trace]
            child = [sys.executable, "-c", code, str(work), design, str(args.items)]
            subprocess.run(
                [*strace, *child, str(args.cycles)],
                check=True,
                env={**os.environ, "GITVAULT_DAEMON": "0"},
            )
            out[design] = count(trace, args.cycles)
    print(json.dumps({"items": args.items, "cycles": args.cycles, "per_cycle": out}, indent=2))


if __name__ == "__main__":
    main()
