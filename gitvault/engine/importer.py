"""Reading a legacy ``memory_checkin.py`` folder into one document.

Rules (the contract's): every ``*.json`` directly in the folder becomes key = its stem;
``agents/*.json`` becomes key ``agents`` mapping agent id (file stem) to its memory; an old
``snapshot.json`` (in the folder or its ``memory/``) is a whole document whose keys win over
same-named files; the event log folder (``eventlog/`` or the ``events_dir`` of
``config/env.json``) is kept verbatim under ``.gitvault/legacy-eventlog/``; ``schemas/*.json``
become ``.gitvault/schemas/K.schema.json``. Everything is parsed and checked before anything is
written, so a broken file stops the import with its name and nothing is left behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitvault.core.codec import Document, check_key, loads
from gitvault.errors import CodecError, LegacyImportError


@dataclass
class Legacy:
    document: Document = field(default_factory=dict)
    eventlog: dict[str, bytes] = field(default_factory=dict)  # file name -> original bytes
    schemas: dict[str, bytes] = field(default_factory=dict)  # key -> original bytes
    sources: dict[str, str] = field(default_factory=dict)  # key -> file it came from
    notes: list[str] = field(default_factory=list)  # what the user should know


def _parse(path: Path, root: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LegacyImportError(f"cannot read {path}: {e.strerror}") from None
    try:
        return loads(data, str(path.relative_to(root)))
    except CodecError as e:
        raise LegacyImportError(f"import stopped, nothing written: {e}") from None


def _json_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.is_file())


def _events_dir(root: Path) -> Path | None:
    env = root / "config" / "env.json"
    name = "eventlog"
    if env.is_file():
        cfg = _parse(env, root)
        if isinstance(cfg, dict) and isinstance(cfg.get("events_dir"), str):
            name = cfg["events_dir"]
    folder = (root / name).resolve()
    if root.resolve() not in folder.parents or not folder.is_dir():
        return None
    return folder


def read_legacy(folder: str | os.PathLike[str]) -> Legacy:
    """Parse and check a legacy folder; raise :class:`LegacyImportError` on the first problem."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise LegacyImportError(f"{root} is not a folder; give the legacy memory folder to import")
    out = Legacy()
    events = _events_dir(root)
    for path in _json_files(root):
        if path.name == "snapshot.json":
            continue
        key = path.stem
        try:
            check_key(key)
        except CodecError as e:
            raise LegacyImportError(f"cannot import {path.name}: {e}") from None
        out.document[key] = _parse(path, root)
        out.sources[key] = path.name
    agents_dir = root / "agents"
    if agents_dir.is_dir():
        agents = {p.stem: _parse(p, root) for p in _json_files(agents_dir)}
        if "agents" in out.document:
            out.notes.append("agents/ folder replaced agents.json")
        out.document["agents"] = agents
        out.sources["agents"] = "agents/"
    for snap in (root / "snapshot.json", root / "memory" / "snapshot.json"):
        if snap.is_file():
            value = _parse(snap, root)
            if not isinstance(value, dict):
                raise LegacyImportError(f"{snap.relative_to(root)} is not a JSON object")
            for key, v in value.items():
                try:
                    check_key(key)
                except CodecError as e:
                    raise LegacyImportError(f"{snap.relative_to(root)}: {e}") from None
                if key in out.document:
                    out.notes.append(
                        f"{snap.relative_to(root)} wins over {out.sources[key]} for {key}"
                    )
                out.document[key] = v
                out.sources[key] = str(snap.relative_to(root))
    if events is not None:
        for path in _json_files(events):
            _parse(path, root)  # must be valid; stored verbatim
            out.eventlog[path.name] = path.read_bytes()
    schemas_dir = root / "schemas"
    if schemas_dir.is_dir():
        for path in _json_files(schemas_dir):
            key = path.name.removesuffix(".json").removesuffix(".schema")
            _parse(path, root)
            out.schemas[check_key(key)] = path.read_bytes()
    if not out.document:
        raise LegacyImportError(f"{root} holds no legacy JSON files (*.json, agents/*.json)")
    return out
