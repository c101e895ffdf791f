"""The steps of an undo: each commit undone on the result of the ones before, in memory.

Used by :mod:`gitvault.engine.undo` (see its docstring for what an undo is). A step is git's revert
of one commit through the checkin merge engine (:func:`gitvault.engine.merge.merge_trees`), or, when
the commit's ``Changed:`` index names the elements it changed, the same merge done element by
element on parsed values (:func:`_fast`): what the tree merge gives for such a step, without
merging whole keys. Undecided conflicts keep the current value and are reported, with each
value's current writer, so that one pass over all steps finds every conflict.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pygit2

from gitvault.core import codec, pointers
from gitvault.core.jsonmerge import MISSING, Conflict, json_equal, merge3
from gitvault.engine import integrate
from gitvault.engine.merge import merge_trees
from gitvault.errors import GitVaultError, InputError
from gitvault.git.storage import Store
from gitvault.history import diff_documents, value_at
from gitvault.history.common import _Blobs
from gitvault.history.exposure import agent_of, first_parents
from gitvault.model import changes

_UNDECIDED = "\x00undecided"
_ID_STEP = re.compile(r"\[id=(.*)\]")


@dataclass(frozen=True)
class Step:
    """One commit to undo: ``commit`` back to ``parent``'s tree (only at ``path`` if given)."""

    commit: pygit2.Commit
    parent: pygit2.Tree | None  # None for a root commit: back to no keys at all
    path: str | None = None


@dataclass
class _Outcome:
    tree: pygit2.Tree
    undecided: list[tuple[Conflict, pygit2.Commit]]
    entries: list[dict[str, Any]]
    decisions: list[str]


# -- pointers -----------------------------------------------------------------------------
def put(doc: Any, path: str, value: Any) -> None:
    """Set (or with MISSING, delete) the value at ``path`` in place; id steps allowed.

    The parent must exist; a missing array item named by id is appended.
    """
    tokens = pointers.split(path)
    if not tokens:
        raise InputError("the pointer names the whole document; name a key, e.g. /tasks")
    parent = doc
    for token in tokens[:-1]:
        parent = pointers.step(parent, token)
        if parent is MISSING:
            raise InputError(f"{path}: its parent does not exist here; name a coarser pointer")
    last = tokens[-1]
    if isinstance(parent, dict):
        if value is MISSING:
            parent.pop(last, None)
        else:
            parent[last] = value
        return
    if not isinstance(parent, list):
        raise InputError(f"{path}: its parent is not an object or an array")
    index: int | None = None
    if _ID_STEP.fullmatch(last):
        found = pointers.step(parent, last)
        index = next((i for i, item in enumerate(parent) if item is found), None)
    elif re.fullmatch(r"0|[1-9]\d*", last) and int(last) < len(parent):
        index = int(last)
    if value is MISSING:
        if index is not None:
            del parent[index]
    elif index is None:
        parent.append(value)
    else:
        parent[index] = value


def _key_value(store: Store, tree: pygit2.Tree | None, key: str) -> Any:
    if tree is None:
        return MISSING
    return value_at(store, tree, pointers.join([key]))


def _with_values(store: Store, tree: pygit2.Tree, edits: Iterable[tuple[str, Any]]) -> pygit2.Oid:
    """``tree`` with each (pointer, value) of ``edits`` put in, in order."""
    docs: dict[str, Any] = {}
    for path, value in edits:
        key = pointers.top_key(path)
        if key not in docs:
            docs[key] = copy.deepcopy(_key_value(store, tree, key))
        if len(pointers.split(path)) == 1:
            docs[key] = copy.deepcopy(value)
        else:
            holder = {key: docs[key]}
            put(holder, path, copy.deepcopy(value))
            docs[key] = holder[key]
    files: dict[str, bytes | pygit2.Oid] = dict(store.key_blobs(tree))
    for key, value in docs.items():
        files.pop(key + codec.BLOB_SUFFIX, None)
        if value is not MISSING:
            files[key + codec.BLOB_SUFFIX] = codec.dumps(value)
    return store.build_tree(tree, files)


def _tree(store: Store, oid: pygit2.Oid) -> pygit2.Tree:
    tree = store.repo[oid]
    assert isinstance(tree, pygit2.Tree)
    return tree


# -- the engine ---------------------------------------------------------------------------
def _theirs(store: Store, step: Step) -> pygit2.Tree:
    """The commit's tree with its memory put back as it was before (``.gitvault/`` kept)."""
    ctree = step.commit.tree
    if step.path is None:
        before = store.key_blobs(step.parent) if step.parent is not None else {}
        return _tree(store, store.build_tree(ctree, dict(before)))
    old = value_at(store, step.parent, step.path) if step.parent is not None else MISSING
    return _tree(store, _with_values(store, ctree, [(step.path, old)]))


class _Acc:
    """The running result: a tree, plus keys changed in memory since (encoded on demand).

    Most steps of a long undo touch one element each; keeping the parsed keys between steps
    makes such a step a few dictionary operations instead of a tree merge (see :func:`_fast`).
    """

    def __init__(self, store: Store, tree: pygit2.Tree) -> None:
        self.store, self._tree = store, tree
        self.values: dict[str, Any] = {}  # parsed keys of the result (MISSING: deleted)
        self.dirty: set[str] = set()

    def value(self, key: str) -> Any:
        if key not in self.values:
            self.values[key] = _key_value(self.store, self._tree, key)
        return self.values[key]

    @property
    def tree(self) -> pygit2.Tree:
        if self.dirty:
            files: dict[str, bytes | pygit2.Oid] = dict(self.store.key_blobs(self._tree))
            for key in self.dirty:
                files.pop(key + codec.BLOB_SUFFIX, None)
                if self.values[key] is not MISSING:
                    files[key + codec.BLOB_SUFFIX] = codec.dumps(self.values[key])
            self._tree = _tree(self.store, self.store.build_tree(self._tree, files))
            self.dirty.clear()
        return self._tree

    @tree.setter
    def tree(self, tree: pygit2.Tree) -> None:
        self._tree, self.values, self.dirty = tree, {}, set()


class _Decider:
    """The policy's decisions for one step; undecided conflicts keep the current value and
    are noted, so that one pass over every step finds every conflict."""

    def __init__(
        self, store: Store, policy: str, step: Step, main: pygit2.Commit, confidence: float
    ) -> None:
        self.policy = integrate.decider(store, policy, step.commit.id, main.id, confidence)
        self.undecided: list[Conflict] = []
        self.decisions: list[str] = []

    def decide(self, c: Conflict) -> tuple[str, str]:
        choice = self.policy(c) if self.policy is not None else None
        if choice is None:
            self.undecided.append(c)
            return "ours", _UNDECIDED
        self.decisions.append(f"{c.path} -> {choice[0]} ({choice[1]})")
        return choice

    def value(self, c: Conflict) -> Any:
        return c.ours if self.decide(c)[0] == "ours" else c.theirs


class _Ids:
    """Where each id sits in the result's arrays, which a long undo looks up at every step (a
    scan of a large array per step was most of its time). Holds the arrays it indexed, so an
    entry never describes another list that reused the address; ``forget`` after a change
    that moves items or changes an id."""

    def __init__(self) -> None:
        self.maps: dict[int, tuple[list[Any], dict[tuple[type, Any], int]]] = {}

    def forget(self, items: list[Any]) -> None:
        self.maps.pop(id(items), None)

    def find(self, items: list[Any], token: str) -> int | None:
        """The index ``pointers.step`` would take for an id step (string id first)."""
        entry = self.maps.get(id(items))
        if entry is None or entry[0] is not items:
            if len(self.maps) > 512:
                self.maps.clear()
            table: dict[tuple[type, Any], int] = {}
            for i, item in enumerate(items):
                if isinstance(item, dict) and "id" in item:
                    v = item["id"]
                    if isinstance(v, str | int) and not isinstance(v, bool):
                        table.setdefault((type(v), v), i)
            entry = self.maps[id(items)] = (items, table)
        wanted = token[4:-1]
        found = entry[1].get((str, wanted))
        if found is None and re.fullmatch(r"-?\d+", wanted):
            found = entry[1].get((int, int(wanted)))
        return found

    def step(self, value: Any, token: str) -> Any:
        if isinstance(value, dict):
            return value.get(token, MISSING)
        i = self.find(value, token)
        return MISSING if i is None else value[i]


def _fast(store: Store, blobs: _Blobs, acc: _Acc, step: Step, d: _Decider, ids: _Ids) -> bool:
    """Undo a step element by element, when that is certainly what the tree merge gives.

    The commit's ``Changed:`` index names the elements it changed (object members, or items
    of an array of objects by id); nothing else differs between the commit and its parent.
    So the 3-way merge of the whole tree changes only those elements, and for each of them it
    is the structural merge of (base: the commit's element, ours: the result's, theirs: the
    parent's), conflicts decided by the same policy. That is done here, on the parsed values
    kept between steps. When anything is less clear (a whole key named, a positional item, an
    element the commit or someone since deleted), False: the step goes through the tree merge.
    """
    index = changes.index_of(step.commit.message)
    if index is None or step.path is not None or step.parent is None:
        return False
    todo: list[tuple[Any, str, Any, str]] = []
    found: list[Conflict] = []
    for key, steps in index.keys.items():
        if steps is None:
            return False
        cside = _elements(store, blobs, step.commit.tree, key, steps)
        pside = _elements(store, blobs, step.parent, key, steps)
        avalue = acc.value(key)
        if cside is None or pside is None:
            return False
        for token in steps:
            if not (
                isinstance(avalue, dict) or (isinstance(avalue, list) and token.startswith("[id="))
            ):
                return False
            ce, ae, pe = cside[token], ids.step(avalue, token), pside[token]
            if ce is MISSING or ae is MISSING:
                return False
            path = pointers.join([key, token])
            merged = merge3(ce, ae, pe, prefix=path)
            if merged.conflicts:
                at = token if isinstance(avalue, dict) else str(ids.find(avalue, token))
                where = pointers.join([key, at])
                found.extend(
                    dataclasses.replace(c, pointer=where + c.pointer[len(path) :])
                    for c in merged.conflicts
                )
                merged = merge3(ce, ae, pe, lambda c: d.value(_at(found, c)), prefix=path)
            todo.append((avalue, token, merged.value, key))
    for avalue, token, value, key in todo:  # certain now: apply
        if isinstance(avalue, dict):
            if value is MISSING:
                avalue.pop(token, None)
            else:
                avalue[token] = value
        else:
            i = ids.find(avalue, token)
            assert i is not None
            if (
                value is MISSING
                or not isinstance(value, dict)
                or value.get("id") != avalue[i]["id"]
            ):
                ids.forget(avalue)  # indices or ids move: index again when next asked
            if value is MISSING:
                del avalue[i]
            else:
                avalue[i] = value
        acc.dirty.add(key)
    return True


def _elements(
    store: Store, blobs: _Blobs, tree: pygit2.Tree, key: str, tokens: Iterable[str]
) -> dict[str, Any] | None:
    """The elements ``tokens`` of a key in a tree (MISSING where absent), or None unless the
    key is an object or (for id steps) an array. Items of a large array are cut out of its
    canonical bytes rather than parsing all of it; anything unexpected parses it whole."""
    tokens = list(tokens)
    try:
        oid = tree[key + codec.BLOB_SUFFIX].id
    except KeyError:
        try:
            oid = tree[key].id  # sharded
        except KeyError:
            return None
    if all(t.startswith("[id=") for t in tokens):
        data = store.blob(oid)
        if data[:1] == b"[":
            cut = {t: _item_in(data, t) for t in tokens}
            if all(v is not _UNSURE for v in cut.values()):
                return cut
    value = blobs.value(oid, key)
    if isinstance(value, dict) or (
        isinstance(value, list) and all(t.startswith("[id=") for t in tokens)
    ):
        return {t: pointers.step(value, t) for t in tokens}
    return None


_UNSURE = object()


def _item_in(data: bytes, token: str) -> Any:
    """The item an id step names, from an array's canonical bytes: its members are the only
    lines indented by four spaces, so ``\n    "id": <id>`` starts inside it. String ids
    first, as ``pointers.step``; _UNSURE when the cut-out does not parse as that item."""
    wanted = token[4:-1]
    forms: list[tuple[bytes, Any]] = [(codec.dumps(wanted).rstrip(b"\n"), wanted)]
    if re.fullmatch(r"-?\d+", wanted):
        forms.append((str(int(wanted)).encode(), int(wanted)))
    for form, want in forms:
        needle = b'\n    "id": ' + form
        at = data.find(needle)
        while at != -1:
            after = data[at + len(needle) : at + len(needle) + 1]
            if after in (b",", b"\n"):
                start = data.rfind(b"\n  {", 0, at)
                stop = data.find(b"\n  }", at)
                if start == -1 or stop == -1:
                    return _UNSURE
                try:
                    item = codec.loads_trusted(data[start + 3 : stop + 4], "item")
                except GitVaultError:
                    return _UNSURE
                if not (
                    isinstance(item, dict)
                    and type(item.get("id")) is type(want)
                    and item.get("id") == want
                ):
                    return _UNSURE
                return item
            at = data.find(needle, at + 1)
    return MISSING


def _at(found: list[Conflict], c: Conflict) -> Conflict:
    """The conflict as reported (positional pointer) for one found again while deciding."""
    return next((f for f in found if f.path == c.path), c)


def _run(
    store: Store, main: pygit2.Commit, steps: Sequence[Step], policy: str, confidence: float
) -> _Outcome:
    """Every step merged into the result of the ones before; undecided conflicts keep the
    current value and are reported, so that one pass finds them all."""
    acc = _Acc(store, main.tree)
    blobs = _Blobs(store)
    ids = _Ids()
    out = _Outcome(main.tree, [], [], [])
    for step in steps:
        d = _Decider(store, policy, step, main, confidence)
        if not _fast(store, blobs, acc, step, d, ids):
            d = _Decider(store, policy, step, main, confidence)  # what _fast noted is void
            outcome = merge_trees(store, step.commit.tree, acc.tree, _theirs(store, step), d.decide)
            if outcome.tree is None:  # only .gitvault/ files conflict unasked; undo keeps them
                raise InputError(
                    f"cannot undo {str(step.commit.id)[:12]}: its .gitvault/ files "
                    "conflict; undo touches memory keys only"
                )
            acc.tree = _tree(store, outcome.tree)
        out.decisions += d.decisions
        out.undecided += [(c, step.commit) for c in d.undecided]
    out.tree = acc.tree
    out.entries = _rows(store, main, out.undecided)
    return out


def _rows(
    store: Store, main: pygit2.Commit, undecided: list[tuple[Conflict, pygit2.Commit]]
) -> list[dict[str, Any]]:
    """Report rows as a checkin's, with each value's current writer found in one walk."""
    writers = _writers(store, main, {c.path for c, _ in undecided if c.kind != "file"})
    rows = []
    for c, commit in undecided:
        row: dict[str, Any] = {"pointer": c.pointer, "path": c.path, "kind": c.kind}
        for name, v in (("base", c.base), ("current", c.ours), ("proposed", c.theirs)):
            if v is not MISSING:
                row[name] = v
        w = writers.get(c.path)
        row["current_writer"], row["current_commit"] = w if w else (None, None)
        row["reverting"] = str(commit.id)
        rows.append(row)
    return rows


def _writers(store: Store, main: pygit2.Commit, paths: set[str]) -> dict[str, tuple[str, str]]:
    """Who last changed each value along main's first parents, in one walk for all of them:
    a commit's ``Changed:`` lines say which of the values it may have changed (the others are
    not looked at), and only those are compared with its parent."""
    out: dict[str, tuple[str, str]] = {}
    by_key: dict[str, dict[str, list[str]]] = {}  # key -> second token -> paths ("": any)
    for p in paths:
        tokens = pointers.split(p)
        step = tokens[1] if len(tokens) > 1 and tokens[1].startswith("[id=") else ""
        by_key.setdefault(tokens[0], {}).setdefault(step, []).append(p)
    left = set(paths)
    blobs = _Blobs(store)
    for commit in first_parents(store, main.id):
        if not left:
            break
        index = changes.index_of(commit.message) if commit.parents else None
        if index is None:
            candidates = list(left)
        else:
            candidates = []
            for key, steps in index.keys.items():
                table = by_key.get(key, {})
                if steps is None:
                    candidates += [p for ps in table.values() for p in ps]
                else:
                    candidates += table.get("", [])
                    for s in steps:
                        candidates += table.get(s, [])
                        if not s.startswith("[id="):  # a positional line: any item may move
                            candidates += [p for k, ps in table.items() if k for p in ps]
        parent = commit.parents[0].tree if commit.parents else None
        for path in candidates:
            if path not in left:
                continue
            now = blobs.at(commit.tree, path)
            if parent is None or not json_equal(now, blobs.at(parent, path)):
                out[path] = (agent_of(commit), str(commit.id))
                left.discard(path)
    return out


# -- shared by the undo commands ----------------------------------------------------------
def keys_changed(store: Store, old: pygit2.Tree, new: pygit2.Tree) -> list[str]:
    return codec.changed_keys(store.key_blobs(old), store.key_blobs(new))


def tree_patch(store: Store, old: pygit2.Tree, new: pygit2.Tree) -> list[dict[str, Any]]:
    keys = keys_changed(store, old, new)
    blobs = _Blobs(store)
    a = {k: v for k in keys if (v := blobs.at(old, pointers.join([k]))) is not MISSING}
    b = {k: v for k in keys if (v := blobs.at(new, pointers.join([k]))) is not MISSING}
    return diff_documents(a, b).patch


def newest_first(store: Store, commits: list[pygit2.Commit]) -> list[pygit2.Commit]:
    def cmp(a: pygit2.Commit, b: pygit2.Commit) -> int:
        if a.id == b.id:
            return 0
        if store.repo.descendant_of(a.id, b.id):
            return -1
        if store.repo.descendant_of(b.id, a.id):
            return 1
        return b.commit_time - a.commit_time

    unique = list({c.id: c for c in commits}.values())
    return sorted(unique, key=functools.cmp_to_key(cmp))
