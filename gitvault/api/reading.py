"""The reading half of the :class:`~gitvault.api.vault.Vault` facade: history, queries, watch.

Each method delegates to :mod:`gitvault.history`; kept apart from the writes so the facade's
file stays one concern. Mixed into ``Vault``; everything here only reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gitvault.api.results import Checkout
from gitvault.git.storage import MAIN, Store
from gitvault.model.waitqueue import Waiter


class Reading:
    """History and retrieval for a vault (mixed into :class:`~gitvault.api.vault.Vault`)."""

    store: Store

    def checkout(
        self,
        agent: str,
        ttl: int | None = None,
        exclusive: bool = False,
        wait: float | None = None,
        on_wait: Callable[[Waiter, int], None] | None = None,
    ) -> Checkout:
        raise NotImplementedError  # the vault's own, see Vault.checkout

    # -- history (see gitvault.history) ----------------------------------------------------
    def log(
        self,
        rev: str | None = None,
        *,
        agent: str | None = None,
        key: str | None = None,
        path: str | None = None,
        source: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
        verify: bool = True,
    ) -> list[Any]:
        """Checkins and merges, newest first, then the imported legacy events; ``verify``:
        with each commit's signature verdict (``verified``, ``fingerprint``, ``signer``)."""
        from gitvault import history
        from gitvault.engine import trust

        entries = history.log(
            self.store,
            rev or MAIN,
            agent=agent,
            key=key,
            path=path,
            source=source,
            since=since,
            until=until,
            limit=limit,
        )
        return trust.annotate(self.store, entries) if verify else entries

    def show(self, rev: str | None = None, at: str | None = None, path: str | None = None) -> Any:
        """The document (or the value at ``path``) at a revision or a point in time."""
        from gitvault import history

        return history.show(self.store, rev, at=at, path=path)

    def diff(
        self, rev1: str | None = None, rev2: str | None = None, path: str | None = None
    ) -> Any:
        """RFC 6902 patch (``.patch``) and summary (``.text``) between two states."""
        from gitvault import history

        return history.diff(self.store, rev1, rev2, path=path)

    def blame(self, path: str, rev: str | None = None, verify: bool = True) -> list[Any]:
        """Who last set the value at ``path`` (or each leaf under it), with signature
        verdicts unless ``verify`` is False."""
        from gitvault import history
        from gitvault.engine import trust

        entries = history.blame(self.store, path, rev or MAIN)
        return trust.annotate(self.store, entries) if verify else entries

    def store_for(self, what: str) -> Store:
        """The vault's own repository, for a command that follows its refs as they move."""
        return self.store

    def watch(
        self, key: str | None = None, path: str | None = None, since: str | None = None
    ) -> Any:
        """A :class:`gitvault.history.watch.Watcher`: each new commit of main touching the
        selection."""
        from gitvault.history import watch

        return watch.watcher(self.store, key, path, since)

    # -- reading a large memory (history.query, history.search, history.reading) ----------
    def query(
        self,
        expression: str,
        rev: str | None = None,
        at: str | float | None = None,
        limit: int | None = None,
        with_pointers: bool = False,
        max_bytes: int | None = None,
        offset: int = 0,
    ) -> Any:
        """The matches of a JMESPath expression (a :class:`gitvault.history.query.QueryResult`)."""
        from gitvault.history import query

        return query.query(self.store, expression, rev, at, limit, with_pointers, max_bytes, offset)

    def search(
        self,
        text: str,
        *,
        key: str | None = None,
        path: str | None = None,
        rev: str | None = None,
        at: str | float | None = None,
        limit: int | None = 20,
        regex: bool = False,
        width: int = 80,
        blame: bool = False,
        max_bytes: int | None = None,
        offset: int = 0,
    ) -> Any:
        """Ranked hits of words (or a regex) in strings and member names
        (a :class:`gitvault.history.search.SearchResult`)."""
        from gitvault.history import search

        return search.search(
            self.store,
            text,
            key=key,
            path=path,
            rev=rev,
            at=at,
            limit=limit,
            regex=regex,
            width=width,
            blame=blame,
            max_bytes=max_bytes,
            offset=offset,
        )

    def show_cut(
        self,
        rev: str | None = None,
        at: str | None = None,
        path: str | None = None,
        max_bytes: int = 20000,
        offset: int = 0,
    ) -> Any:
        """:meth:`show` as whole parts within ``max_bytes`` (a
        :class:`gitvault.history.reading.Page` of ``{"pointer", "value"}``, pointers relative to
        ``path``)."""
        from gitvault.history import reading

        return reading.cut_value(self.show(rev, at, path), max_bytes, offset)

    def checkout_parts(
        self, agent: str, paths: list[str], ttl: int | None = None, exclusive: bool = False
    ) -> tuple[Checkout, Any]:
        """:meth:`checkout` (a lease on the whole document), and the values at ``paths``
        (a :class:`gitvault.history.reading.Parts`); a pointer naming nothing refuses first."""
        from gitvault.history import reading

        reading.check_paths(self.store, paths)
        co = self.checkout(agent, ttl, exclusive)
        return co, reading.parts_of(co.document, paths)

    def export(self, rev: str | None = None, fmt: str = "json", history: bool = False) -> str:
        from gitvault import history as h

        return h.export(self.store, rev, fmt=fmt, history=history)
