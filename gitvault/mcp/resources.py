"""The resources: ``gitvault://main`` and ``gitvault://main/{key}``, which clients may read and
subscribe to (the subscriptions are :mod:`gitvault.mcp.watch`'s)."""

import json

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from gitvault.core import codec
from gitvault.errors import GitVaultError
from gitvault.mcp.common import Tools


def register(t: Tools) -> None:
    """Add the resources to ``t``'s server."""
    server = t.server

    @server.resource(
        "gitvault://main",
        name="main",
        title="The whole memory",
        description="The current document on main, as canonical JSON.",
        mime_type="application/json",
    )
    def main_document() -> str:
        try:
            return codec.dumps_document(t.vault().read()).decode()
        except GitVaultError as e:
            raise ResourceError(json.dumps(e.to_json(), ensure_ascii=False)) from None

    @server.resource(
        "gitvault://main/{key}",
        name="key",
        title="One key of the memory",
        description="The current value of one top-level key, as canonical JSON.",
        mime_type="application/json",
    )
    def main_key(key: str) -> str:
        try:
            document = t.vault().read()
        except GitVaultError as e:
            raise ResourceError(json.dumps(e.to_json(), ensure_ascii=False)) from None
        if key not in document:
            raise ResourceNotFoundError(f"no key {key!r} on main; keys: {', '.join(document)}")
        return codec.dumps(document[key]).decode()
