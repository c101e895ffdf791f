"""How often git's line merge alone succeeds, and how often the structural fallback is needed.

Two agents check out the same version of the bundled example memory, each makes 1-3 random
edits of the kinds agents make (change a field of a record, append a record, delete a record,
edit a nested object, add a key), both check in. For every key changed on both sides we count
who merged it: git's text merge (accepted only when it yields valid JSON) or the structural
fallback; and how many checkins ended in a true conflict.

    python bench/merge_corpus.py [--scenarios 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from gitvault import Vault
from gitvault.errors import ConflictError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "legacy"


def edit(doc: dict[str, Any], rng: random.Random, who: str, n: int) -> None:
    kind = rng.choice(["field", "field", "field", "append", "delete", "nested", "newkey"])
    arr = doc[rng.choice(["tasks", "bugs", "decisions"])]
    if kind == "field" and arr:
        item = rng.choice(arr)
        field = rng.choice(["status", "title", "owner", "priority", "open", "severity"])
        item[field] = f"{who}-{n}" if field != "priority" else rng.randint(1, 9)
    elif kind == "append":
        arr.append({"id": f"{who}-{n}", "title": f"added by {who}", "status": "todo"})
    elif kind == "delete" and arr:
        arr.pop(rng.randrange(len(arr)))
    elif kind == "nested":
        agent = doc["agents"][rng.choice(sorted(doc["agents"]))]
        agent["notes"].append(f"{who} note {n}")
    else:
        doc["patterns"][f"p-{who}-{n}"] = {"description": who, "uses": n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    keys: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.git"
        Vault.init(path, EXAMPLE)
        subprocess.run(
            ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
        )
        v = Vault.open(path)
        for i in range(args.scenarios):
            a, b = v.checkout("a"), v.checkout("b")
            for n in range(rng.randint(1, 3)):
                edit(a.document, rng, "a", i * 10 + n)
            for n in range(rng.randint(1, 3)):
                edit(b.document, rng, "b", i * 10 + n)
            v.checkin("a", a.document, "bench", 0.5)
            try:
                r = v.checkin("b", b.document, "bench", 0.5)
            except ConflictError:
                outcomes["conflict"] += 1
                for k in v.conflicts.all():
                    v.drop_conflict(k.id)
                continue
            outcomes["merged" if r.merged else "fast-forward"] += 1
            keys.update(r.strategy.values())
    both = keys["git"] + keys["structural"]
    result = {
        "scenarios": args.scenarios,
        "checkins": dict(outcomes),
        "keys_changed_on_both_sides": both,
        "merged_by_git_text_merge": keys["git"],
        "needed_structural_fallback": keys["structural"],
        "git_share": round(keys["git"] / both, 3) if both else None,
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "merge_corpus.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
