"""Settings: one table, three sources. A CLI flag beats an environment variable, which beats
the vault's git config (``gitvault.<name>``), which beats the default.

Kept in the vault's own git config so that every process using the vault agrees, and so plain
``git config -f vault.git/config gitvault.defaultTtl 300`` works too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pygit2

from gitvault.errors import InputError
from gitvault.git.storage import Store
from gitvault.model.policy import POLICIES

IDENTITY_SOURCES = ("none", "gitolite", "http", "env")
SIGNED_MODES = ("off", "agents", "all")


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type
    default: Any
    help: str
    vault_only: bool = False  # security settings: never from $GITVAULT_*, only the vault's file

    @property
    def env(self) -> str:
        snake = "".join("_" + c if c.isupper() else c.upper() for c in self.name)
        return "GITVAULT_" + snake

    def parse(self, raw: str, where: str) -> Any:
        if self.kind is bool:
            low = raw.strip().lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
            raise InputError(f"{where}: {self.name}={raw!r} is not a boolean (true/false)")
        if self.kind is int:
            try:
                value = int(raw)
            except ValueError:
                raise InputError(f"{where}: {self.name}={raw!r} is not an integer") from None
            if value < 1:
                raise InputError(f"{where}: {self.name}={raw!r} must be at least 1")
            return value
        if self.name == "onConflict" and raw not in POLICIES:
            raise InputError(f"{where}: onConflict={raw!r}: use fail, ours, theirs or confidence")
        if self.name == "requireSigned" and raw not in SIGNED_MODES:
            raise InputError(f"{where}: requireSigned={raw!r}: use {', '.join(SIGNED_MODES)}")
        if self.name == "identityFrom" and raw not in IDENTITY_SOURCES:
            raise InputError(f"{where}: identityFrom={raw!r}: use {', '.join(IDENTITY_SOURCES)}")
        return raw


SETTINGS = {
    s.name: s
    for s in (
        Setting("defaultTtl", int, 900, "lease time-to-live in seconds when checkout gives none"),
        Setting("maxTtl", int, 86400, "the longest lease a checkout may ask for"),
        Setting(
            "onConflict", str, "fail", "checkin conflict policy: fail, ours, theirs, confidence"
        ),
        Setting("fsync", bool, True, "fsync objects and refs (off: faster, not crash-safe)"),
        Setting("maxDocumentBytes", int, 64 * 2**20, "largest proposal accepted, in bytes"),
        Setting("maxDepth", int, 100, "deepest nesting of objects/arrays accepted"),
        Setting("maxStringBytes", int, 16 * 2**20, "longest string accepted, in UTF-8 bytes"),
        Setting("maxKeys", int, 100_000, "most keys in one object"),
        Setting("staleLockSeconds", int, 2, "a ref lock this old whose writer is gone is broken"),
        Setting(
            "gcLooseObjects", int, 6700, "checkin starts `git gc` past this many loose objects"
        ),
        Setting(
            "requireIdentity",
            bool,
            False,
            "refuse pushes whose pusher the host did not authenticate (on for `init --hosted`)",
            vault_only=True,
        ),
        Setting(
            "identityFrom",
            str,
            "none",
            "who vouches for the pusher: none, gitolite "
            "($GL_USER), http ($REMOTE_USER), env (identityVariables)",
            vault_only=True,
        ),
        Setting(
            "requireSigned",
            str,
            "off",
            "refuse writes whose commits are not signed by a key "
            "allowed for their Agent-Id: off, agents (agents' commits), all (every commit)",
            vault_only=True,
        ),
        Setting(
            "vaultSigning",
            bool,
            True,
            "sign the vault's own commits (merges, resolutions, "
            "import) with its key; off saves one ssh-keygen process per merge",
            vault_only=True,
        ),
        Setting(
            "identityVariables",
            str,
            "GL_USER,REMOTE_USER",
            "with identityFrom=env: the variables naming the pusher, first set wins",
            vault_only=True,
        ),
    )
}


def lookup(name: str) -> Setting:
    try:
        return SETTINGS[name]
    except KeyError:
        raise InputError(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}") from None


def get(store: Store, name: str) -> tuple[Any, str]:
    """The effective value of a setting and where it came from (env, vault, default)."""
    s = lookup(name)
    raw = None if s.vault_only else os.environ.get(s.env)
    if raw is not None:
        return s.parse(raw, f"${s.env}"), "env"
    raw = vault_config(store, name) if s.vault_only else store.config_get(f"gitvault.{name}")
    if raw is not None:
        return s.parse(raw, "vault config"), "vault"
    return s.default, "default"


def vault_config(store: Store, name: str) -> str | None:
    """``gitvault.<name>`` from the vault's own config file only.

    A pusher over a local path runs the hooks with their own environment, so
    ``$GITVAULT_*``, ``$HOME/.gitconfig`` and ``$GIT_CONFIG_*`` are theirs to set; the
    vault's file is the hosting account's.
    """
    try:
        value = pygit2.Config(os.path.join(store.path, "config"))[f"gitvault.{name}"]
    except (KeyError, OSError, pygit2.GitError):
        return None
    return str(value)


def value(store: Store, name: str) -> Any:
    return get(store, name)[0]


def set_value(store: Store, name: str, raw: str) -> Any:
    s = lookup(name)
    parsed = s.parse(raw, "config set")
    store.repo.config[f"gitvault.{name}"] = str(parsed).lower() if s.kind is bool else str(parsed)
    return parsed


def all_settings(store: Store) -> list[dict[str, Any]]:
    out = []
    for name, s in SETTINGS.items():
        v, where = get(store, name)
        out.append(
            {
                "name": name,
                "value": v,
                "source": where,
                "default": s.default,
                "env": s.env,
                "help": s.help,
            }
        )
    return out
