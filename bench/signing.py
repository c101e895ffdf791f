#!/usr/bin/env python3
"""What signatures cost: a signed checkin against an unsigned one, and ``gitvault verify``
over a long signed history.

    python bench/signing.py [--checkins 20] [--commits 1000] [--workers 4] [--dir TMPDIR]

1. **Checkin.** One vault imported from ``examples/legacy``; one agent checks in 20 times
   (median, each a fast-forward changing one task's status), three ways: unsigned
   (``Store.sign`` off, the engine as before signing existed), signed with the agent's key
   (the first by ``ssh-keygen -Y sign``, the rest in-process: ``engine/sshsig.py``), and
   signed *and* verified with ``gitvault.requireSigned=agents`` (one more
   ``ssh-keygen -Y verify``). Ratios are to the unsigned checkin.
   Then checkins that merge (another agent moved main meanwhile), with the vault signing its
   merge commits (the default) and with ``gitvault.vaultSigning false``.
2. **verify.** A chain of ``--commits`` commits, each signed with an agent key in
   allowed_signers (by ``Signer``, so in-process after the first; with one ssh-keygen process
   per commit, ~35 ms on a loaded two-core machine, 10,000 took minutes; the default builds
   1,000 and the report extrapolates linearly, saying so), then ``Vault.verify`` once,
   timed, with ``--workers`` threads each running ssh-keygen processes (``--fresh``), then
   again with the verdicts kept in ``<vault>/gitvault-verified/`` by the previous run.

A JSON summary goes to stdout and to ``bench/results/signing.json``; progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pygit2

from gitvault import Vault
from gitvault.engine import trust
from gitvault.engine.signing import Signer
from gitvault.model.provenance import identity, message

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "legacy"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def new_vault(folder: Path, name: str, key: Path) -> Vault:
    path = folder / name
    Vault.init(path, EXAMPLE)
    subprocess.run(
        ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
    )
    v = Vault.open(path)
    v.add_key("bench", f"{key}.pub")
    return v


def checkins(v: Vault, n: int, tag: str = "s") -> list[float]:
    """Milliseconds of ``n`` checkins, each changing one task's status (fast-forwards).

    ``tag`` keeps the values of the warm-up apart from the timed ones: a checkin that writes
    the value already there changes nothing and costs a fraction of a real one."""
    out = []
    for i in range(n):
        co = v.checkout("bench", 3600)
        doc = co.document
        doc["tasks"][i % len(doc["tasks"])]["status"] = f"{tag}{i}"
        t = time.perf_counter()
        v.checkin("bench", doc, "bench", 0.5, "", lease=co.lease.token)
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_checkin(folder: Path, key: Path, n: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for mode in ("unsigned", "signed", "signed+required"):
        v = new_vault(folder, f"checkin-{mode}.git", key)
        if mode == "unsigned":
            v.store.sign = None
        else:
            v.sign_with(str(key))
        if mode == "signed+required":
            v.config_set("requireSigned", "agents")
        checkins(v, 3, "warm-")  # warm caches and imports
        samples = checkins(v, n)
        rows[mode] = {
            "median_ms": round(statistics.median(samples), 2),
            "samples_ms": [round(s, 2) for s in samples],
        }
        say(f"checkin {mode}: median {rows[mode]['median_ms']} ms")
    base = rows["unsigned"]["median_ms"]
    for mode in ("signed", "signed+required"):
        rows[mode]["ratio_to_unsigned"] = round(rows[mode]["median_ms"] / base, 2)
    return rows


def merges(v: Vault, n: int) -> list[float]:
    """Milliseconds of ``n`` checkins that each merge (another agent moved main meanwhile)."""
    out = []
    for i in range(n):
        late = v.checkout("late", 3600)
        with v.lease("early", 3600) as s:
            s.doc["tasks"][0]["status"] = f"e{i}"
            s.commit("bench")
        doc = late.document
        doc["tasks"][1]["status"] = f"l{i}"
        t = time.perf_counter()
        r = v.checkin("late", doc, "bench", 0.5, "", lease=late.lease.token)
        out.append((time.perf_counter() - t) * 1000)
        assert r.merged
    return out


def bench_merge(folder: Path, key: Path, n: int) -> dict[str, Any]:
    """A checkin that merges: the vault signs the merge commit with its key (or not)."""
    rows: dict[str, Any] = {}
    for mode in ("vault signing off", "vault signing on"):
        v = new_vault(folder, f"merge-{mode.split()[-1]}.git", key)
        if mode.endswith("off"):
            v.config_set("vaultSigning", "false")
            v = Vault.open(v.path)
        merges(v, 2)
        samples = merges(v, n)
        rows[mode] = {"median_ms": round(statistics.median(samples), 2)}
        say(f"merge, {mode}: median {rows[mode]['median_ms']} ms")
    off = rows["vault signing off"]["median_ms"]
    rows["vault signing on"]["ratio_to_off"] = round(rows["vault signing on"]["median_ms"] / off, 2)
    return rows


def build_history(v: Vault, key: Path, n: int) -> float:
    """A chain of ``n`` commits signed by ``key`` as agent ``bench``; seconds taken."""
    store, repo = v.store, v.store.repo
    signer = Signer(str(key))
    main = store.ref("refs/heads/main")
    assert main is not None
    parent = store.commit(main)
    blob_tree = parent.tree
    t0 = time.perf_counter()
    when = parent.commit_time + 1  # one second apart, after the commit of the keys
    for i in range(n):
        tb = repo.TreeBuilder(blob_tree)
        tb.insert(
            "bench.json",
            repo.create_blob(f'{{\n  "n": {i}\n}}\n'.encode()),
            pygit2.enums.FileMode.BLOB,
        )
        tree = tb.write()
        sig = pygit2.Signature("bench", "bench@gitvault", when + i, 0)
        msg = message(
            f"checkin bench: bench {i}",
            [("Agent-Id", "bench"), ("Source", "bench"), ("Confidence", "0.5")],
        )
        who = identity("bench")
        author = pygit2.Signature(who.name, who.email, when + i, 0)
        parents: list[str | pygit2.Oid] = [parent.id]
        made = repo.create_commit_string(author, sig, msg, tree, parents)
        content = str(made)  # the commit's text (the stub says Oid)
        oid = repo.create_commit_with_signature(content, signer.sign(content), "gpgsig")
        parent = repo[oid]  # type: ignore[assignment]
        blob_tree = parent.tree
        if i and i % 200 == 0:
            say(f"  {i} signed commits, {time.perf_counter() - t0:.0f} s")
    repo.references["refs/heads/main"].set_target(parent.id, "bench history")
    return time.perf_counter() - t0


def bench_verify(folder: Path, key: Path, n: int, workers: int) -> dict[str, Any]:
    v = new_vault(folder, "history.git", key)
    build = build_history(v, key, n)
    say(f"built {n} signed commits in {build:.1f} s")
    original = trust._check_all

    def check_all(store: Any, ver: Any, commits: list[str], workers_: int = workers) -> Any:
        return original(store, ver, commits, workers_)

    trust._check_all = check_all  # type: ignore[assignment]
    t = time.perf_counter()
    report = v.verify(None, "agents", fresh=True)
    took = time.perf_counter() - t
    assert report.ok, report.bad[:3]
    v.verify(None, "agents")  # fills <vault>/gitvault-verified/
    t = time.perf_counter()
    again = v.verify(None, "agents")
    cached = time.perf_counter() - t
    assert again.ok
    say(f"verify again (kept verdicts): {cached:.2f} s")
    per = took / report.checked
    say(f"verify: {report.checked} commits in {took:.1f} s ({per * 1000:.1f} ms each)")
    return {
        "commits": report.checked,
        "build_s": round(build, 1),
        "verify_s": round(took, 2),
        "verify_cached_s": round(cached, 3),
        "per_commit_ms": round(per * 1000, 2),
        "workers": workers,
        "extrapolated_10000_s": round(per * 10_000, 1),
        "measured_10000": report.checked >= 10_000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkins", type=int, default=20)
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        key = keygen(folder / "bench-key")
        load = os.getloadavg()
        result = {
            "checkin": bench_checkin(folder, key, args.checkins),
            "merge": bench_merge(folder, key, args.checkins),
            "verify": bench_verify(folder, key, args.commits, args.workers),
            "loadavg_start": [round(x, 2) for x in load],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
        }
    text = json.dumps(result, indent=2)
    out = ROOT / "bench" / "results" / "signing.json"
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
