"""Undo as new commits: revert changes, restore a past state, quarantine an agent.

History is never rewritten. Reverting commit C (first parent P) is git's classic revert: a
3-way merge of main with P's tree, from base C, through the same engine as a checkin
(:func:`gitvault.merge.merge_trees`: git's tree merge, then the structural JSON merge, the
conflict policies and their ``Resolved:`` decisions, then the schema gate of
:func:`gitvault.integrate.plan`). A value that someone changed after C is a conflict, and the
proposal is kept under ``refs/conflicts/<who>/<n>`` for ``gitvault resolve``, as a checkin's.
A merge commit is reverted against its first parent, which undoes what it brought in.

Several commits (``revert A B``, a quarantine) are reverted newest first, each merged into the
result of the one before, in memory; the outcome is one commit on main, parent main, moved by
compare-and-swap (recomputed on a lost race). Its trailers are the usual provenance (Agent-Id
is whoever undoes) plus one ``Reverts: <commit>`` per commit undone and the ``Changed:`` index.

Undo touches the memory only, never ``.gitvault/``: schemas and quarantines have their own
commands, so a revert cannot lift a quarantine or drop a schema by accident.

When several commits are reverted and some values conflict, the kept proposal is a pair of
commits built so that ``resolve`` sees exactly those conflicts: its base is main with each
conflicting value as the reverted commit left it, and its tip is the revert's result with
each conflicting value put back. Against main, everything else merges cleanly and each
conflicting value conflicts with base = what the revert expected, current = main's, proposed =
the value before.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pygit2
from pygit2.enums import SortMode

from . import changes, codec, integrate, pointers, quarantine, schemas
from .errors import ConflictError, GitVaultError, InputError, VaultBusy
from .history import _Blobs, diff_documents, parse_time, revision, value_at
from .jsonmerge import MISSING, Conflict, json_equal, merge3
from .leases import NOTES, iso, lease_ref
from .merge import merge_trees
from .provenance import (
    Provenance,
    check_agent,
    checkin_trailers,
    identity,
    message,
    parse_confidence,
    parse_trailers,
    subject_for,
)
from .storage import MAIN, RefTx, Store

if TYPE_CHECKING:
    from .vault import Vault

ATTEMPTS = 50  # lost races for main before VaultBusy (each recomputes the whole undo)
_UNDECIDED = "\x00undecided"
_ID_STEP = re.compile(r"\[id=(.*)\]")


@dataclass(frozen=True)
class Step:
    """One commit to undo: ``commit`` back to ``parent``'s tree (only at ``path`` if given)."""

    commit: pygit2.Commit
    parent: pygit2.Tree | None  # None for a root commit: back to no keys at all
    path: str | None = None


@dataclass(frozen=True)
class UndoResult:
    """What an undo did (or with ``dry_run``, would do)."""

    commit: str | None  # the new head of main; None when nothing changed or a dry run
    reverted: list[str]  # the commits undone, newest first
    changed: list[str]  # keys changed
    patch: list[dict[str, Any]]  # RFC 6902 patch from main to the result
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # those the policy left
    resolved: list[str] = field(default_factory=list)  # decisions a policy took
    dry_run: bool = False
    kept: str | None = None  # the conflict id when the undo was kept for `resolve`
    quarantine: dict[str, Any] | None = None

    @property
    def noop(self) -> bool:
        return self.commit is None

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "reverted": self.reverted,
            "changed": self.changed,
            "patch": self.patch,
            "conflicts": self.conflicts,
            "resolved": self.resolved,
            "dry_run": self.dry_run,
            "kept": self.kept,
            "quarantine": self.quarantine,
            "noop": self.noop,
        }


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


def _message(
    prov: Provenance,
    main: pygit2.Commit,
    verb: str,
    keys: list[str],
    trailers: Iterable[tuple[str, str]],
    index: list[str],
) -> str:
    # "revert alice: tasks"; "quarantine mallory by alice: tasks"
    subject = subject_for(f"by {prov.agent}" if " " in verb else prov.agent, verb, keys)
    return message(
        subject,
        [*checkin_trailers(prov, "none", str(main.id)), *trailers, *changes.trailers(index)],
    )


def _keys_changed(store: Store, old: pygit2.Tree, new: pygit2.Tree) -> list[str]:
    return codec.changed_keys(store.key_blobs(old), store.key_blobs(new))


def _patch(store: Store, old: pygit2.Tree, new: pygit2.Tree) -> list[dict[str, Any]]:
    keys = _keys_changed(store, old, new)
    blobs = _Blobs(store)
    a = {k: v for k in keys if (v := blobs.at(old, pointers.join([k]))) is not MISSING}
    b = {k: v for k in keys if (v := blobs.at(new, pointers.join([k]))) is not MISSING}
    return diff_documents(a, b).patch


def _schema_gate(store: Store, tree: pygit2.Tree, keys: list[str]) -> None:
    problems = schemas.validate_tree(store, tree, keys)
    if problems:
        raise schemas.SchemaError(
            f"the undone document fails its schema at {problems[0]['pointer']}: "
            f"{problems[0]['message']}; nothing changed",
            problems,
        )


class _Undo:
    """One undo against a vault: compute against main, land by compare-and-swap, retry."""

    def __init__(self, vault: Vault, prov: Provenance, policy: str) -> None:
        self.vault, self.store, self.prov, self.policy = vault, vault.store, prov, policy

    def main(self) -> pygit2.Commit:
        return self.store.commit(self.vault._main())

    def land(
        self, main: pygit2.Commit, tree: pygit2.Tree, msg: str, revoke: str | None = None
    ) -> pygit2.Oid | None:
        """A commit of ``tree`` on main, if main is still ``main``; revokes a lease with it."""
        store = self.store
        commit = store.write_commit(
            tree.id, [main.id], identity(self.prov.agent), msg, self.vault.clock()
        )

        def fn(rtx: RefTx) -> bool:
            if rtx.get(MAIN) != main.id:
                return False
            rtx.set(MAIN, commit, msg.split("\n", 1)[0])
            if revoke is not None:
                self.vault.leases.revoke(rtx, revoke, "quarantined")
            return True

        names = [MAIN, NOTES, lease_ref(revoke)] if revoke is not None else [MAIN]
        return commit if store.transact(names, fn, msg.split("\n", 1)[0]) else None

    def keep(
        self,
        main: pygit2.Commit,
        steps: Sequence[Step],
        out: _Outcome,
        reverts: list[tuple[str, str]],
    ) -> ConflictError:
        """Keep the conflicting undo for ``resolve`` and describe it (see the module doc)."""
        store, prov = self.store, self.prov
        if len(steps) == 1:
            step = steps[0]
            base = step.commit
            theirs = _theirs(store, step)
        else:
            try:
                seen: set[str] = set()
                expected = []
                for c, _ in out.undecided:
                    if c.path not in seen:
                        seen.add(c.path)
                        expected.append((c.path, c.base))
                btree = _tree(store, _with_values(store, main.tree, expected))
                theirs = _tree(
                    store,
                    _with_values(store, out.tree, [(c.path, c.theirs) for c, _ in out.undecided]),
                )
            except InputError as e:
                return ConflictError(
                    f"{len(out.entries)} conflict(s) undoing; not kept ({e})",
                    {"conflicts": out.entries},
                )
            bmsg = message(
                subject_for(prov.agent, "revert base", _keys_changed(store, main.tree, btree)),
                [
                    *checkin_trailers(prov, "none", str(main.id)),
                    ("Undo-Base", "what the revert expected to find"),
                ],
            )
            base = store.commit(
                store.write_commit(
                    btree.id, [main.id], identity(prov.agent), bmsg, self.vault.clock()
                )
            )
        keys = _keys_changed(store, base.tree, theirs)
        msg = _message(
            prov, main, "revert", keys, reverts, changes.between(store, base.tree, theirs)
        )
        proposal = store.write_commit(
            theirs.id, [base.id], identity(prov.agent), msg, self.vault.clock()
        )
        kept = self.vault.conflicts.keep(prov.agent, proposal)
        report = {
            "id": kept.id,
            "ref": kept.ref,
            "agent": prov.agent,
            "proposal": str(proposal),
            "base": str(base.id),
            "main": str(main.id),
            "conflicts": out.entries,
        }
        what = ", ".join(e["path"] for e in out.entries[:3])
        more = f" and {len(out.entries) - 3} more" if len(out.entries) > 3 else ""
        return ConflictError(
            f"undo conflicts at {what}{more} (changed since); main keeps them, the undo is kept "
            f"as {kept.ref}; finish with `gitvault resolve {kept.id} --take ours|theirs|FILE`",
            report,
        )


def _provenance(
    by: str, source: str, confidence: float | str | None, justification: str
) -> Provenance:
    return Provenance(
        check_agent(by),
        source,
        parse_confidence(1.0 if confidence is None else confidence),
        justification,
    ).check()


def _policy(vault: Vault, on_conflict: str | None) -> str:
    from . import settings

    return integrate.check_policy(on_conflict or settings.value(vault.store, "onConflict"))


def _newest_first(store: Store, commits: list[pygit2.Commit]) -> list[pygit2.Commit]:
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


def _wait(attempt: int) -> None:
    """After a lost race for main, a short jittered wait (none before the first try)."""
    if attempt:
        time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.05)))


def step_of(commit: pygit2.Commit, path: str | None = None) -> Step:
    return Step(commit, commit.parents[0].tree if commit.parents else None, path)


def undo_steps(
    vault: Vault,
    steps: Callable[[pygit2.Commit], list[Step]],
    prov: Provenance,
    policy: str,
    dry_run: bool,
    what: str,
    record: Callable[[pygit2.Tree], pygit2.Oid] | None = None,
    revoke: str | None = None,
) -> UndoResult:
    """The loop every undo shares: steps against the current main, then one commit."""
    u = _Undo(vault, prov, policy)
    store = vault.store
    for attempt in range(ATTEMPTS):
        _wait(attempt)
        main = u.main()
        todo = steps(main)
        out = _run(store, main, todo, policy, prov.confidence)
        reverts = [("Reverts", str(s.commit.id)) for s in todo]
        keys = _keys_changed(store, main.tree, out.tree)
        reverted = [str(s.commit.id) for s in todo]
        if dry_run:
            return UndoResult(
                None,
                reverted,
                keys,
                _patch(store, main.tree, out.tree),
                out.entries,
                out.decisions,
                True,
            )
        if out.entries:
            if record is not None:  # the quarantine holds even though its undo waits
                tree = _tree(store, record(main.tree))
                msg = _message(prov, main, what, [], [], [])
                if u.land(main, tree, msg, revoke) is None:
                    continue
            raise u.keep(main, todo, out, reverts)
        tree = out.tree
        if record is not None:
            tree = _tree(store, record(tree))
        elif not keys:
            return UndoResult(None, reverted, [], [], [], out.decisions)
        _schema_gate(store, tree, keys)
        index = changes.between(store, main.tree, tree)
        msg = _message(
            prov, main, what, keys, [*reverts, *(("Resolved", d) for d in out.decisions)], index
        )
        commit = u.land(main, tree, msg, revoke)
        if commit is not None:
            return UndoResult(
                str(commit), reverted, keys, _patch(store, main.tree, tree), [], out.decisions
            )
    raise VaultBusy(what, ATTEMPTS)


# -- the commands -------------------------------------------------------------------------
def revert(
    vault: Vault,
    revs: Sequence[str],
    by: str,
    source: str,
    confidence: float | str | None = None,
    justification: str = "",
    path: str | None = None,
    on_conflict: str | None = None,
    dry_run: bool = False,
) -> UndoResult:
    """Undo the changes of ``revs`` (only at ``path`` if given) as one new commit on main."""
    if not revs:
        raise InputError("name at least one commit to revert (e.g. main~1 or a commit id)")
    prov = _provenance(by, source, confidence, justification)
    policy = _policy(vault, on_conflict)
    if path is not None:
        codec.check_key(pointers.top_key(path))
    commits = _newest_first(vault.store, [vault.store.resolve(r) for r in revs])
    main = vault.store.commit(vault._main())
    for c in commits:
        if c.id != main.id and not vault.store.repo.descendant_of(main.id, c.id):
            raise InputError(
                f"{str(c.id)[:12]} is not in main's history; only what reached main can be reverted"
            )

    return undo_steps(
        vault, lambda _main: [step_of(c, path) for c in commits], prov, policy, dry_run, "revert"
    )


def restore(
    vault: Vault,
    rev: str | None,
    at: str | None,
    by: str,
    source: str,
    confidence: float | str | None = None,
    justification: str = "",
    path: str | None = None,
    dry_run: bool = False,
) -> UndoResult:
    """Put the document (or the value at ``path``) back as it was at ``rev`` or time ``at``.

    A deliberate overwrite, not a merge: what others wrote since at that place is replaced.
    """
    if (rev is None) == (at is None):
        raise InputError("give exactly one of a revision or --at TIME")
    prov = _provenance(by, source, confidence, justification)
    store = vault.store
    past = revision(store, rev, at)
    if path is not None:
        codec.check_key(pointers.top_key(path))
    u = _Undo(vault, prov, "fail")
    for attempt in range(ATTEMPTS):
        _wait(attempt)
        main = u.main()
        if path is None:
            tree = _tree(store, store.build_tree(main.tree, dict(store.key_blobs(past.tree))))
        else:
            tree = _tree(
                store, _with_values(store, main.tree, [(path, value_at(store, past.tree, path))])
            )
        keys = _keys_changed(store, main.tree, tree)
        patch = _patch(store, main.tree, tree)
        if dry_run or not keys:
            return UndoResult(None, [], keys, patch, dry_run=dry_run)
        _schema_gate(store, tree, keys)
        msg = _message(
            prov,
            main,
            "restore",
            keys,
            [("Restores", str(past.id))],
            changes.between(store, main.tree, tree),
        )
        commit = u.land(main, tree, msg)
        if commit is not None:
            return UndoResult(str(commit), [], keys, patch)
    raise VaultBusy("restore", ATTEMPTS)


def first_parents(store: Store, head: pygit2.Oid) -> list[pygit2.Commit]:
    """Main's first-parent chain, newest first: each checkin, merge or push exactly once."""
    walker = store.repo.walk(head, SortMode.TOPOLOGICAL)
    walker.simplify_first_parent()
    return list(walker)


def agent_of(commit: pygit2.Commit) -> str:
    return parse_trailers(commit.message).get("Agent-Id", commit.author.name)


def commits_by(
    store: Store, head: pygit2.Oid, agent: str, since: str | None = None, until: str | None = None
) -> list[pygit2.Commit]:
    """``agent``'s commits along main's first parents in the window, newest first.

    A merge counts with what it brought in (its diff from its first parent): that is the
    agent's part of it, and the commits it merged are not counted again.
    """
    lo = parse_time(since) if since is not None else None
    hi = parse_time(until) if until is not None else None
    return [
        c
        for c in first_parents(store, head)
        if c.parents
        and agent_of(c) == agent
        and (lo is None or c.commit_time >= lo)
        and (hi is None or c.commit_time <= hi)
    ]


def quarantine_agent(
    vault: Vault,
    agent: str,
    by: str,
    source: str,
    since: str | None = None,
    until: str | None = None,
    justification: str = "",
    dry_run: bool = False,
    with_derived: bool = False,
    on_conflict: str | None = None,
) -> UndoResult:
    """Undo ``agent``'s writes in the window, record the quarantine and revoke its lease."""
    from .exposure import exposure

    check_agent(agent)
    prov = _provenance(by, source, None, justification or f"quarantine {agent}")
    policy = _policy(vault, on_conflict)
    store = vault.store
    held = quarantine.on_main(store).get(agent)
    if held is not None:
        raise InputError(
            f"{agent!r} is already quarantined since {held.since} by {held.by}; "
            f"lift it first with `gitvault quarantine --lift {agent}`"
        )
    entry = quarantine.Entry(
        agent, iso(vault.clock()), prov.agent, source, justification, since, until
    )

    def steps(main: pygit2.Commit) -> list[Step]:
        bad = commits_by(store, main.id, agent, since, until)
        if with_derived and bad:  # (all on main's first-parent chain, like ``bad``)
            derived = {e.commit for e in exposure(store, main.id, bad) if e.kind == "derived"}
            derived |= {str(c.id) for c in bad}
            bad = [c for c in first_parents(store, main.id) if str(c.id) in derived]
        return [step_of(c) for c in bad]  # newest first, as the chain

    def record(tree: pygit2.Tree) -> pygit2.Oid:
        entries = quarantine.read(store, tree)
        entries[agent] = entry
        return quarantine.write(store, tree, entries)

    try:
        result = undo_steps(
            vault, steps, prov, policy, dry_run, f"quarantine {agent}", record, revoke=agent
        )
    except ConflictError as e:
        raise ConflictError(
            f"{agent} is quarantined (its writes are refused from now on), but its {e}",
            {**e.report, "quarantine": entry.to_json()},
        ) from None
    return UndoResult(
        result.commit,
        result.reverted,
        result.changed,
        result.patch,
        result.conflicts,
        result.resolved,
        result.dry_run,
        result.kept,
        entry.to_json(),
    )


def lift(
    vault: Vault, agent: str, by: str, source: str = "quarantine", justification: str = ""
) -> quarantine.Entry | None:
    """End ``agent``'s quarantine (a commit on main); None when it was not quarantined."""
    check_agent(agent)
    prov = _provenance(by, source, None, justification or f"lift quarantine of {agent}")
    u = _Undo(vault, prov, "fail")
    store = vault.store
    for attempt in range(ATTEMPTS):
        _wait(attempt)
        main = u.main()
        entries = quarantine.read(store, main.tree)
        entry = entries.pop(agent, None)
        if entry is None:
            return None
        tree = _tree(store, quarantine.write(store, main.tree, entries))
        msg = _message(prov, main, f"lift quarantine {agent}", [], [("Lifts", agent)], [])
        if u.land(main, tree, msg) is not None:
            return entry
    raise VaultBusy(f"lift quarantine of {agent}", ATTEMPTS)
