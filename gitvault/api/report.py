"""Human-readable renderings of library results (the CLI prints them; JSON comes from to_json)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gitvault.api.vault import Status
    from gitvault.history import BlameEntry, LogEntry


def _ago(seconds: float) -> str:
    s = int(abs(seconds))
    text = f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
    return text


def status_text(st: Status) -> str:
    lines = [
        f"vault:    {st.path}",
        f"head:     {st.head or '(none)'}",
        f"commits:  {st.commits}",
        f"keys:     {len(st.keys)}",
    ]
    lines += [f"  {k.key:<24} {k.size:>10} bytes" for k in st.keys]
    live = [x for x in st.leases if x.live(st.now)]
    expired = [x for x in st.leases if not x.live(st.now)]
    lines.append(f"leases:   {len(live)} live, {len(expired)} expired")
    for x in live:
        lines.append(
            f"  {x.agent:<24} token {x.token:<6} {x.mode:<9} "
            f"{_ago(x.expires - st.now)} left   base {x.base[:12]}"
        )
    for x in expired:
        lines.append(
            f"  {x.agent:<24} token {x.token:<6} {x.mode:<9} expired {_ago(st.now - x.expires)} ago"
        )
    lines.append(f"conflicts: {len(st.conflicts)} pending")
    lines += [f"  {c}" for c in st.conflicts]
    if st.quarantined:
        lines.append(f"quarantined: {len(st.quarantined)}")
        lines += [f"  {q.agent:<24} since {q.since} by {q.by} ({q.source})" for q in st.quarantined]
    return "\n".join(lines) + "\n"


def _value(row: dict[str, Any], name: str) -> str:
    if name not in row:
        return "(absent)"
    text = json.dumps(row[name], ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "..."


def conflict_text(report: dict[str, Any]) -> str:
    lines = [f"CONFLICT: {len(report.get('conflicts', []))} value(s) changed on both sides"]
    lines += _rows(report.get("conflicts", []))
    if report.get("id"):
        lines.append(
            f"kept as {report.get('ref')}; finish with `gitvault resolve {report['id']} "
            "--take ours|theirs|FILE`, or drop it with `gitvault conflicts drop ID`"
        )
    return "\n".join(lines)


def _rows(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for c in rows:
        if c.get("kind") == "schema":
            lines.append(f"  {c['path']}  fails its schema: {c.get('message')}")
            continue
        lines.append(f"  {c['path']}  ({c.get('kind')})")
        lines.append(f"    base:     {_value(c, 'base')}")
        writer = c.get("current_writer")
        by = f"   (last written by {writer})" if writer else ""
        lines.append(f"    current:  {_value(c, 'current')}{by}")
        lines.append(f"    proposed: {_value(c, 'proposed')}")
    return lines


def pending_text(pending: list[dict[str, Any]]) -> str:
    if not pending:
        return "no pending conflicts\n"
    lines = []
    for p in pending:
        lines.append(
            f"{p['id']}  {p['ref']}  proposal {p['proposal'][:12]}  source {p['source']}"
            f"  confidence {p['confidence']}"
        )
        lines += _rows(p["conflicts"]) or ["  (no longer conflicts: `resolve` will merge it)"]
    return "\n".join(lines) + "\n"


def log_text(entries: list[LogEntry]) -> str:
    lines = []
    for e in entries:
        head = "legacy " + (e.legacy_file or "") if e.legacy else (e.commit or "")[:12]
        kind = " merge" if e.merged else ""
        conf = "" if e.confidence is None else f" confidence {e.confidence}"
        lines.append(f"{head}{kind}  {e.iso or '?'}  {e.agent}  source {e.source}{conf}")
        if e.justification:
            lines.append(f"    why: {e.justification}")
        if e.changed:
            lines.append(f"    changed: {', '.join(e.changed)}")
        lines += [f"    resolved: {r}" for r in e.resolved]
        lines += [f"    reverts: {r}" for r in e.reverts]
    return "\n".join(lines) + ("\n" if lines else "")


def blame_text(entries: list[BlameEntry]) -> str:
    lines = []
    for b in entries:
        value = json.dumps(b.value, ensure_ascii=False)
        value = value if len(value) <= 40 else value[:37] + "..."
        conf = "-" if b.confidence is None else f"{b.confidence}"
        lines.append(
            f"{b.commit[:12]}  {b.iso}  {b.agent:<12} {b.source:<16} {conf:<5} {b.path} = {value}"
        )
    return "\n".join(lines) + ("\n" if lines else "")
