"""``blame``: who last set each value, following first parents."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pygit2

from gitvault.core import codec, pointers
from gitvault.core.jsonmerge import MISSING, is_id_array, json_equal
from gitvault.errors import InputError
from gitvault.git.storage import MAIN, Store
from gitvault.history import pathindex
from gitvault.history.common import (
    LastWriter,
    _blob_id,
    _Blobs,
    _check_path,
    _iso,
    _name,
    _verification,
)
from gitvault.history.diff import _key_doc, positional
from gitvault.model import changes

# -- blame ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlameEntry:
    """One leaf value and the commit that last set it (along main's first parents)."""

    path: str  # id form where array items have unique ids
    pointer: str  # positional, in the blamed revision
    value: Any
    commit: str
    agent: str
    source: str
    confidence: float | None
    justification: str
    time: int
    iso: str
    verified: bool | str | None = None  # set by gitvault.engine.trust.annotate
    fingerprint: str | None = None
    signer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **_verification(self),
            "path": self.path,
            "pointer": self.pointer,
            "value": self.value,
            "commit": self.commit,
            "agent": self.agent,
            "source": self.source,
            "confidence": self.confidence,
            "justification": self.justification,
            "time": self.time,
            "iso": self.iso,
        }


@dataclass
class _Node:
    """A node of the blamed value; ``pending`` counts its leaves not yet attributed."""

    token: str
    path: str
    pointer: str
    want: Any
    children: list[_Node] = field(default_factory=list)
    pending: int = 1
    writer: pygit2.Commit | None = None

    def leaves(self) -> Iterator[_Node]:
        if not self.children:
            yield self
        for child in self.children:
            yield from child.leaves()


def _steps(value: Any) -> list[tuple[str, str, Any]]:
    """(id-form token, positional token, child) for each child of a container."""
    if isinstance(value, dict):
        return [(k, k, v) for k, v in value.items()]
    if isinstance(value, list):
        if is_id_array(value) and len({str(x["id"]) for x in value}) == len(value):
            return [(f"[id={x['id']}]", str(i), x) for i, x in enumerate(value)]
        return [(str(i), str(i), x) for i, x in enumerate(value)]
    return []


def _build(token: str, path: list[str], pointer: list[str], value: Any) -> _Node:
    node = _Node(token, pointers.join(path), pointers.join(pointer), value)
    for tok, pos, child in _steps(value):
        node.children.append(_build(tok, [*path, tok], [*pointer, pos], child))
    if node.children:
        node.pending = sum(child.pending for child in node.children)
    return node


def _attribute(node: _Node, have: Any, commit: pygit2.Commit) -> int:
    """Credit ``commit`` with the pending leaves under ``node`` whose value differs in its
    first parent (``have``); descends only where the parent's subtree differs."""
    if node.pending == 0 or json_equal(node.want, have):
        return 0
    if not node.children:
        node.writer, node.pending = commit, 0
        return 1
    done = 0
    for child in node.children:
        sub = MISSING if have is MISSING else pointers.step(have, child.token)
        done += _attribute(child, sub, commit)
    node.pending -= done
    return done


def id_form(doc: Any, path: str) -> str:
    """``path`` with positional steps into arrays of uniquely-id'd items written as id steps."""
    out: list[str] = []
    value = doc
    for token in pointers.split(path):
        if isinstance(value, list):
            for tok, pos, child in _steps(value):
                if token in (tok, pos):
                    out.append(tok)
                    value = child
                    break
            else:
                out.append(token)
                value = pointers.step(value, token)
            continue
        out.append(token)
        value = pointers.step(value, token)
    return pointers.join(out)


def blame(store: Store, path: str, rev: str = MAIN) -> list[BlameEntry]:
    """Who last set the value at ``path`` (a leaf), or each leaf under it, as of ``rev``.

    One walk along first parents from ``rev``: commits whose blob of the key equals their
    parent's are skipped unparsed; at the others every pending leaf whose value differs in the
    parent is credited to the commit. Leaves left at the root are the root's (the import).
    """
    tokens = _check_path(path)
    head = store.resolve(rev)
    blobs = _Blobs(store)
    if not tokens:
        return [
            e
            for k in sorted(blobs.document(head.tree))
            for e in blame(store, pointers.join([k]), str(head.id))
        ]
    key = tokens[0]
    kfile = key + codec.BLOB_SUFFIX
    doc = _key_doc(blobs, head.tree, key)
    want = pointers.get(doc, path)
    if want is MISSING:
        raise InputError(
            f"{path} does not exist at {_name(rev, head)}; check the pointer "
            "(e.g. /tasks/[id=T-004]/status) against the document there"
        )
    idp = id_form(doc, path)
    pos = positional(doc, path)
    assert pos is not None
    id_tokens = pointers.split(idp)
    root = _build("", id_tokens, pointers.split(pos), want)
    probe = changes.Probe(id_tokens)
    # the path index leaves out stretches of commits the probe below would rule out anyway
    for commit in pathindex.first_parents(store, head, id_tokens):
        if not root.pending:
            break
        if not commit.parents:
            for leaf in root.leaves():
                if leaf.writer is None:
                    leaf.writer = commit
            break
        parent = commit.parents[0]
        if probe.rules_out(commit.message):
            continue  # its Changed: lines rule the value out: no tree or blob read
        blob = _blob_id(commit.tree, kfile)
        pblob = _blob_id(parent.tree, kfile)
        if blob != pblob:
            pvalue = blobs.value(pblob, key)
            have = MISSING if pvalue is MISSING else pointers.get({key: pvalue}, idp)
            _attribute(root, have, commit)
    out = []
    for leaf in root.leaves():
        assert leaf.writer is not None
        w = LastWriter.of(leaf.writer)
        out.append(
            BlameEntry(
                leaf.path,
                leaf.pointer,
                leaf.want,
                w.commit,
                w.agent,
                w.source,
                w.confidence,
                w.justification,
                w.time,
                _iso(w.time, leaf.writer.commit_time_offset),
            )
        )
    return out
