"""JSON Schemas for keys: ``.gitvault/schemas/K.schema.json`` in the tree of main.

A key with a schema must validate in every commit that reaches main; the check runs on the
keys a commit changes (and on the key whose schema changes).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pygit2

from gitvault.core import codec
from gitvault.errors import SchemaError
from gitvault.git.storage import Store

SCHEMA_DIR = ".gitvault/schemas"


def schema_path(key: str) -> str:
    return f"{SCHEMA_DIR}/{codec.check_key(key)}.schema.json"


def read_schema(store: Store, tree: pygit2.Tree, key: str) -> Any | None:
    try:
        entry = tree[schema_path(key)]
    except KeyError:
        return None
    return codec.loads(store.blob(entry.id), schema_path(key))


def check_schema(schema: Any, name: str) -> None:
    from jsonschema import SchemaError as JsError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except JsError as e:
        raise SchemaError(
            f"{name} is not a valid JSON Schema: {e.message}",
            [{"pointer": "", "message": e.message}],
        ) from None


def problems(schema: Any, key: str, value: Any) -> list[dict[str, str]]:
    from jsonschema.validators import validator_for

    validator = validator_for(schema)(schema)
    out = []
    for err in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path))):
        pointer = "/" + key + "".join(f"/{p}" for p in err.path)
        text = err.message if len(err.message) <= 160 else err.message[:157] + "..."
        out.append({"pointer": pointer, "message": text})
    return out


def validate_tree(store: Store, tree: pygit2.Tree, keys: Iterable[str]) -> list[dict[str, str]]:
    """Schema problems of ``keys`` in ``tree`` (empty when all hold or have no schema)."""
    found: list[dict[str, str]] = []
    blobs = store.key_blobs(tree)
    for key in keys:
        schema = read_schema(store, tree, key)
        name = key + codec.BLOB_SUFFIX
        if schema is None or name not in blobs:
            continue
        found += problems(schema, key, codec.loads_trusted(store.blob(blobs[name]), name))
    return found


def require_valid(
    store: Store, tree: pygit2.Tree, keys: Iterable[str], fails: str, then: str = ""
) -> None:
    """Refuse with :class:`SchemaError` naming the first problem of ``keys`` in ``tree``:
    "<fails> at <pointer>: <message><then>", every problem attached for ``--json``."""
    found = validate_tree(store, tree, keys)
    if found:
        raise SchemaError(f"{fails} at {found[0]['pointer']}: {found[0]['message']}{then}", found)
