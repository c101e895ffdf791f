"""Every dotted ``gitvault`` name that the code, the docs or the README names exists.

The package moved into layers; a docstring that still names the old flat modules sends a
reader to a module that is gone (``watch`` is in ``history/`` now). Settings
(``gitvault.onConflict``) and git config keys of a clone (``gitvault.agent``) are names of
another kind and are told apart by their spelling.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from gitvault.model.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"\bgitvault(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
# git config keys that are not vault settings: a clone's agent, the test fixtures' own keys,
# a placeholder in the hosting guide and the htpasswd file of an Apache example
OTHER_KEYS = {"agent", "test", "NAME", "htpasswd", "max"}
FILE_SUFFIXES = (".json", ".py", ".md", ".git", ".log", ".toml", ".txt", ".pyc")


def sources() -> list[Path]:
    roots = [ROOT / "gitvault", ROOT / "docs", ROOT / "bench", ROOT / "tests", ROOT / "examples"]
    files = [p for r in roots for p in r.rglob("*") if p.suffix in (".py", ".md", ".html")]
    return [ROOT / "README.md", *sorted(p for p in files if "__pycache__" not in p.parts)]


def resolves(name: str) -> bool:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_dotted_gitvault_name_exists() -> None:
    missing: dict[str, str] = {}
    for path in sources():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name in NAME.findall(line):
                second = name.split(".")[1]
                if second in SETTINGS or second in OTHER_KEYS or name.endswith(FILE_SUFFIXES):
                    continue
                if not resolves(name):
                    missing.setdefault(name, f"{path.relative_to(ROOT)}:{n}")
    assert not missing, f"names of modules or objects that do not exist: {missing}"
