"""``diff``: an RFC 6902 patch and a line per change between two states."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch
import pygit2

from gitvault.core import codec, pointers
from gitvault.core.jsonmerge import MISSING, is_id_array, json_equal
from gitvault.errors import InputError
from gitvault.git.storage import MAIN, Store
from gitvault.history.common import _blob_id, _Blobs, _check_path, _name

# -- diff -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffResult:
    """An RFC 6902 patch from one state to another, and its one-line-per-op rendering."""

    patch: list[dict[str, Any]]
    text: str
    old: str | None = None  # commit ids; None for in-memory documents
    new: str | None = None
    path: str | None = None

    @property
    def empty(self) -> bool:
        return not self.patch

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.old,
            "to": self.new,
            "path": self.path,
            "patch": self.patch,
            "text": self.text,
        }


def _render(value: Any, width: int = 72) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) <= width:
        return text
    if isinstance(value, dict):
        return f"{{…{len(value)} keys}}"
    if isinstance(value, list):
        return f"[…{len(value)} items]"
    return text[: width - 1] + "…"


def _prefixed(op: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = dict(op)
    out["path"] = prefix + op["path"]
    if "from" in op:
        out["from"] = prefix + op["from"]
    return out


def _id_tokens(items: list[Any]) -> list[str] | None:
    """The ``[id=...]`` steps of an array of uniquely-id'd objects, else None."""
    if not is_id_array(items):
        return None
    tokens = [f"[id={x['id']}]" for x in items]
    return tokens if len(set(tokens)) == len(tokens) else None


def _id_array_ops(
    old: list[Any], new: list[Any], prefix: str, old_ids: list[str], new_ids: list[str]
) -> list[dict[str, Any]]:
    """Ops that keep each record's identity: removes, then moves and adds into the new order,
    then each common record's own changes at its final index.

    A positional diff of a reordered array would instead rewrite records field by field
    (``/tasks/0/id: "T-001" -> "T-040"``), which is valid but tells a reader the wrong story.
    """
    ops: list[dict[str, Any]] = []
    work = list(old_ids)
    keep = set(new_ids)
    for i in reversed(range(len(work))):
        if work[i] not in keep:
            ops.append({"op": "remove", "path": f"{prefix}/{i}"})
            del work[i]
    for target, ident in enumerate(new_ids):
        if target < len(work) and work[target] == ident:
            continue
        if ident in work:
            j = work.index(ident)
            ops.append({"op": "move", "from": f"{prefix}/{j}", "path": f"{prefix}/{target}"})
            work.insert(target, work.pop(j))
        else:
            ops.append({"op": "add", "path": f"{prefix}/{target}", "value": new[target]})
            work.insert(target, ident)
    before = dict(zip(old_ids, old, strict=True))
    for target, ident in enumerate(new_ids):
        if ident in before:
            ops += _ops(before[ident], new[target], f"{prefix}/{target}")
    return ops


def _ops(old: Any, new: Any, prefix: str) -> list[dict[str, Any]]:
    """RFC 6902 ops turning ``old`` into ``new`` (both present), paths under ``prefix``.

    Objects key by key, arrays of id'd records by id, other arrays by jsonpatch. jsonpatch
    compares with Python ``==`` (``1 == True == 1.0``), so where its ops do not rebuild ``new``
    under strict JSON equality the array is replaced whole.
    """
    if json_equal(old, new):
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for k in sorted(set(old) | set(new)):
            where = prefix + pointers.join([k])
            if k not in new:
                ops.append({"op": "remove", "path": where})
            elif k not in old:
                ops.append({"op": "add", "path": where, "value": new[k]})
            else:
                ops += _ops(old[k], new[k], where)
        return ops
    if isinstance(old, list) and isinstance(new, list):
        old_ids, new_ids = _id_tokens(old), _id_tokens(new)
        if old_ids is not None and new_ids is not None:
            return _id_array_ops(old, new, prefix, old_ids, new_ids)
        plain: list[dict[str, Any]] = jsonpatch.make_patch(old, new).patch
        try:
            exact = json_equal(jsonpatch.apply_patch(old, plain), new)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
            exact = False
        if exact:
            return [_prefixed(op, prefix) for op in plain]
    return [{"op": "replace", "path": prefix, "value": new}]


def _line_of(op: Mapping[str, Any], work: Any, base: str) -> str:
    """One op as a line, with the value it replaces or removes read from ``work``."""
    where = op["path"]
    rel = where[len(base) :]
    kind = op["op"]
    if kind == "add":
        return f"+ {where}: {_render(op['value'])}"
    if kind == "remove":
        return f"- {where} (was {_render(_at_pointer(work, rel))})"
    if kind == "replace":
        return f"~ {where}: {_render(_at_pointer(work, rel))} -> {_render(op['value'])}"
    if kind == "move":
        moved = _at_pointer(work, op["from"][len(base) :])
        ident = f" ({moved['id']})" if isinstance(moved, dict) and "id" in moved else ""
        return f"> {op['from']} -> {where}{ident}"
    return f"{kind} {where}"


def _value_patch(old: Any, new: Any, prefix: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Patch ops turning ``old`` into ``new`` at ``prefix`` (either may be MISSING), with one
    text line per op. The ops are replayed on a copy to read old values and to prove they
    rebuild ``new`` exactly; if they ever did not, one ``replace`` is the honest answer."""
    if old is MISSING and new is MISSING:
        return [], []
    if old is MISSING:
        return [{"op": "add", "path": prefix, "value": new}], [f"+ {prefix}: {_render(new)}"]
    if new is MISSING:
        return [{"op": "remove", "path": prefix}], [f"- {prefix} (was {_render(old)})"]
    ops = _ops(old, new, prefix)
    work = copy.deepcopy(old)
    lines: list[str] = []
    try:
        for op in ops:
            lines.append(_line_of(op, work, prefix))
            relative = {**op, "path": op["path"][len(prefix) :]}
            if "from" in op:
                relative["from"] = op["from"][len(prefix) :]
            work = jsonpatch.apply_patch(work, [relative], in_place=True)
        exact = json_equal(work, new)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
        exact = False
    if not exact:
        return (
            [{"op": "replace", "path": prefix, "value": new}],
            [f"~ {prefix}: {_render(old)} -> {_render(new)}"],
        )
    return ops, lines


def _at_pointer(doc: Any, pointer: str) -> Any:
    """The value at a positional pointer as jsonpatch writes it."""
    value = doc
    for token in pointers.split(pointer):
        value = pointers.step(value, token)
    return value


def _documents_patch(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per key, so one key's odd patch cannot spoil another's and paths stay short."""
    ops: list[dict[str, Any]] = []
    lines: list[str] = []
    for k in sorted(set(old) | set(new)):
        o, n = _value_patch(old.get(k, MISSING), new.get(k, MISSING), pointers.join([k]))
        ops += o
        lines += n
    return ops, lines


def _text(lines: list[str]) -> str:
    """One line per op, each ending in a newline (empty when nothing changed)."""
    return "".join(line + "\n" for line in lines)


def diff_documents(a: Mapping[str, Any], b: Mapping[str, Any]) -> DiffResult:
    """The patch from document ``a`` to ``b`` (for ``checkin --dry-run``)."""
    ops, lines = _documents_patch(a, b)
    return DiffResult(ops, _text(lines))


def positional(doc: Any, path: str) -> str | None:
    """``path`` with id steps replaced by the item's index in ``doc``; None if absent."""
    out: list[str] = []
    value = doc
    for token in pointers.split(path):
        nxt = pointers.step(value, token)
        if nxt is MISSING:
            return None
        if isinstance(value, list):
            token = str(next(i for i, item in enumerate(value) if item is nxt))
        out.append(token)
        value = nxt
    return pointers.join(out)


def _key_doc(blobs: _Blobs, tree: pygit2.Tree, key: str) -> dict[str, Any]:
    value = blobs.value(_blob_id(tree, key + codec.BLOB_SUFFIX), key)
    return {} if value is MISSING else {key: value}


def diff(
    store: Store, rev1: str | None = None, rev2: str | None = None, path: str | None = None
) -> DiffResult:
    """The patch from ``rev1`` (default: the first parent of ``rev2``) to ``rev2`` (main).

    With ``path`` only that value is compared; the ops stay absolute, located where the value
    sits in ``rev1`` (in ``rev2`` if it is new), so they apply to the whole ``rev1`` document.
    """
    new_c = store.resolve(rev2 or MAIN)
    if rev1 is not None:
        old_c: pygit2.Commit | None = store.resolve(rev1)
    else:
        old_c = new_c.parents[0] if new_c.parents else None
    blobs = _Blobs(store)
    old_id = str(old_c.id) if old_c is not None else None
    if not path:
        # only keys whose blobs differ are parsed: equal blobs are equal values
        old_files = store.key_blobs(old_c.tree) if old_c is not None else {}
        new_files = store.key_blobs(new_c.tree)
        old_doc, new_doc = {}, {}
        for name in set(old_files) | set(new_files):
            if old_files.get(name) != new_files.get(name):
                k = codec.key_of(name)
                assert k is not None
                if name in old_files:
                    old_doc[k] = blobs.value(old_files[name], k)
                if name in new_files:
                    new_doc[k] = blobs.value(new_files[name], k)
        ops, lines = _documents_patch(old_doc, new_doc)
        return DiffResult(ops, _text(lines), old_id, str(new_c.id), path)
    tokens = _check_path(path)
    key = tokens[0]
    old_doc = _key_doc(blobs, old_c.tree, key) if old_c is not None else {}
    new_doc = _key_doc(blobs, new_c.tree, key)
    a, b = pointers.get(old_doc, path), pointers.get(new_doc, path)
    if a is MISSING and b is MISSING:
        new_name = _name(rev2 or "main", new_c)
        old_name = "its parent" if old_c is None else _name(rev1 or "its parent", old_c)
        raise InputError(
            f"{path} exists neither at {old_name} nor at {new_name}; "
            "check the pointer (e.g. /tasks/[id=T-004]/status)"
        )
    where = positional(old_doc, path) if a is not MISSING else positional(new_doc, path)
    assert where is not None
    ops, lines = _value_patch(a, b, where)
    return DiffResult(ops, _text(lines), old_id, str(new_c.id), path)
