"""``gitvault query`` and ``gitvault search``: read only what you need (see gitvault.history.query,
gitvault.history.search). Parse, call :class:`gitvault.Vault`, print; errors map to exit codes in
``cli._Group`` like every other command.
"""

# No `from __future__ import annotations`, as in cli.py: typer reads these annotations.

from typing import Annotated, Any

import typer

RevArg = Annotated[str | None, typer.Argument(help="Revision (default main).")]
AtOpt = Annotated[
    str | None,
    typer.Option("--at", help="The state at this time instead (ISO-8601 or unix seconds)."),
]
OffsetOpt = Annotated[int, typer.Option("--offset", help="Skip this many matches (to page).")]
MaxBytesOpt = Annotated[
    int | None,
    typer.Option(
        "--max-bytes", help="Cut the answer at a whole match to fit this many bytes of JSON."
    ),
]


def _hit_line(hit: dict[str, Any]) -> str:
    line = f"{hit['path']}  [{hit['where']}]  {hit['text']}"
    w = hit.get("writer")
    if w:
        conf = "" if w["confidence"] is None else f", {w['confidence']}"
        line += f"\n    by {w['agent']} ({w['source']}{conf}) {w['iso']} {w['commit'][:12]}"
    return line


def register(app: typer.Typer) -> None:
    """Add ``query`` and ``search`` to the ``gitvault`` command."""
    from gitvault.cli import common as cli

    @app.command()
    def query(
        ctx: typer.Context,
        expression: Annotated[
            str,
            typer.Argument(
                help="JMESPath, e.g. \"tasks[?status=='blocked'].{id: id, title: title}\"."
            ),
        ],
        rev: RevArg = None,
        at: AtOpt = None,
        limit: Annotated[
            int | None, typer.Option("-n", "--limit", help="At most N matches.")
        ] = None,
        with_pointers: Annotated[
            bool,
            typer.Option(
                "--pointers",
                help="Give each match's JSON Pointer (for checkin --patch) and id-step path.",
            ),
        ] = False,
        offset: OffsetOpt = 0,
        max_bytes: MaxBytesOpt = None,
        vault: cli.VaultOpt = None,
        as_json: cli.JsonOpt = False,
    ) -> None:
        """Print the matches of a JMESPath EXPRESSION as a JSON array ([] for none).

        With --pointers each match is {"value", "pointer", "path"}: "pointer" is RFC 6901
        with indexes (what checkin --patch takes, valid at the revision asked), "path" the
        same with id steps. With --json: the answer with its revision, paging and how the
        data was read. Exit 1 for a bad expression (with its position) or an unknown key.
        """
        r = cli._open(ctx, vault, as_json).query(
            expression, rev, at, limit, with_pointers, max_bytes, offset
        )
        if as_json:
            cli._out(r.to_json(with_pointers))
        else:
            cli._out([m.to_json() for m in r.matches] if with_pointers else r.values)
        if r.note:
            cli._err(r.note)

    @app.command()
    def search(
        ctx: typer.Context,
        text: Annotated[
            str, typer.Argument(help="Words (case-insensitive), or a regex with --regex.")
        ],
        rev: RevArg = None,
        key: Annotated[str | None, typer.Option("--key", help="Only in this key.")] = None,
        path: Annotated[
            str | None,
            typer.Option("--path", help="Only under this pointer, e.g. /tasks/[id=T-004]."),
        ] = None,
        at: AtOpt = None,
        limit: Annotated[int, typer.Option("-n", "--limit", help="At most N hits.")] = 20,
        regex: Annotated[
            bool, typer.Option("--regex", help="TEXT is a regular expression.")
        ] = False,
        width: Annotated[
            int, typer.Option("--width", help="Trim each text to this many characters.")
        ] = 80,
        blame: Annotated[
            bool, typer.Option("--blame", help="Say who last wrote each hit.")
        ] = False,
        offset: OffsetOpt = 0,
        max_bytes: MaxBytesOpt = None,
        vault: cli.VaultOpt = None,
        as_json: cli.JsonOpt = False,
    ) -> None:
        """Find TEXT in string values and member names, best first.

        Ranked by how many of the words match, then by how recently the item or member
        holding the hit changed. One line per hit: id-step path, [value|name], the text.
        With --json: each hit's pointer (for checkin --patch), path, text, score, time.
        """
        r = cli._open(ctx, vault, as_json).search(
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
        if as_json:
            cli._out(r.to_json())
        else:
            for hit in r.to_json()["hits"]:
                typer.echo(_hit_line(hit))
            if not r.hits:
                cli._err(f"no hits for {text!r}")
        if r.note:
            cli._err(r.note)
