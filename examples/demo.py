"""`make demo`: a vault from the bundled legacy folder, two agents, a merge, a conflict, git log.

Runs the real `gitvault` CLI and plain `git`, echoing each command, so what you see is what
you would type.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(*args: str, ok: tuple[int, ...] = (0,), stdin: str | None = None) -> str:
    print("$ " + " ".join(args if args[0] == "git" else ("gitvault", *args[1:])), flush=True)
    cmd = list(args)
    if cmd[0] == "gitvault":
        cmd = [sys.executable, "-m", "gitvault", *cmd[1:]]
    r = subprocess.run(cmd, capture_output=True, text=True, input=stdin)
    if r.stderr:
        print(r.stderr.rstrip(), flush=True)
    if r.returncode not in ok:
        print(r.stdout)
        raise SystemExit(f"demo step failed with exit {r.returncode}")
    return r.stdout


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo").resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    vault = str(out / "vault.git")
    v = ("--vault", vault)
    run("gitvault", "init", "--import", str(HERE / "legacy"), *v)

    # two agents check out the same version
    planner = json.loads(run("gitvault", "checkout", "planner", "600", *v))
    coder = json.loads(run("gitvault", "checkout", "coder", "600", *v))

    planner["tasks"][0]["status"] = "doing"
    planner["roadmap"]["vision"] = "One consistent memory, with its history, for every agent."
    coder["tasks"][1]["status"] = "done"
    coder["bugs"].append(
        {
            "id": "B-005",
            "title": "Merge keeps both agents' work",
            "open": False,
            "severity": "low",
            "reported_by": "coder",
        }
    )
    (out / "planner.json").write_text(json.dumps(planner, indent=2, ensure_ascii=False))
    (out / "coder.json").write_text(json.dumps(coder, indent=2, ensure_ascii=False))
    run(
        "gitvault",
        "checkin",
        "planner",
        str(out / "planner.json"),
        "planning-session",
        "0.9",
        "user confirmed the roadmap",
        *v,
    )
    # main moved: coder's checkin is merged, nothing is lost
    run(
        "gitvault",
        "checkin",
        "coder",
        str(out / "coder.json"),
        "ci-logs",
        "0.7",
        "T-002 finished, found B-005",
        *v,
    )

    # a true conflict: both change the same value
    reviewer = json.loads(run("gitvault", "checkout", "reviewer", "600", *v))
    coder = json.loads(run("gitvault", "checkout", "coder", "600", *v))
    reviewer["tasks"][2]["status"] = "todo"
    coder["tasks"][2]["status"] = "blocked"
    (out / "reviewer.json").write_text(json.dumps(reviewer))
    (out / "coder.json").write_text(json.dumps(coder))
    run(
        "gitvault",
        "checkin",
        "reviewer",
        str(out / "reviewer.json"),
        "code-review",
        "0.95",
        "reopened T-003",
        *v,
    )
    print(
        run(
            "gitvault",
            "checkin",
            "coder",
            str(out / "coder.json"),
            "ci-logs",
            "0.6",
            "T-003 blocked",
            *v,
            ok=(3,),
        )
    )
    run("gitvault", "resolve", "coder/1", "--take", "ours", "--agent", "reviewer", *v)
    for agent in ("planner", "coder", "reviewer"):
        run("gitvault", "release", agent, *v)
    print(run("gitvault", "status", *v))

    fmt = (
        "%h %<(9,trunc)%an %<(34,trunc)%s  source=%(trailers:key=Source,valueonly,separator=)"
        " confidence=%(trailers:key=Confidence,valueonly,separator=)"
    )
    print(run("git", "-C", vault, "log", "--graph", f"--format={fmt}", "main"))
    print(run("git", "-C", vault, "log", "-1", "--format=%B", "main"))
    print(f"the vault is in {vault}; try `git -C {vault} log -p -- tasks.json`")
    # the last line: the review page of this vault (timeline, commits, document, leases)
    script = Path(sys.executable).with_name("gitvault")
    command = os.path.relpath(script) if script.exists() else "gitvault"
    print(f"see it in a browser: {command} serve --vault {vault}")


if __name__ == "__main__":
    main()
