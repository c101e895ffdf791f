"""Who may do what, on the :class:`~gitvault.api.vault.Vault` facade: access rules, allowed
signers, and what the signatures prove. Changes are commits on main, landed through
:func:`gitvault.engine.advance.commit_on_main` like every other write to main.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gitvault.engine import signing, trust, verification
from gitvault.engine.advance import commit_on_main
from gitvault.git.storage import Store
from gitvault.model import settings


class Governance:
    """Settings, access rules and signing keys for a vault (mixed into ``Vault``)."""

    store: Store
    clock: Callable[[], float]

    def config(self) -> list[dict[str, Any]]:
        """Every setting with its effective value and where it came from."""
        return settings.all_settings(self.store)

    def config_get(self, name: str) -> Any:
        return settings.value(self.store, name)

    def config_set(self, name: str, value: str) -> Any:
        """Store a setting in the vault's git config (checked against its type first)."""
        return settings.set_value(self.store, name, value)

    def access(self) -> Any:
        """The access rules on main (:class:`gitvault.model.access.Rules`)."""
        from gitvault.model import access

        return access.load_main(self.store)

    def change_access(
        self, change: Callable[[Any], Any], by: str = "gitvault", what: str = "access"
    ) -> str:
        """Commit ``change(rules)`` as main's new access rules (compare-and-swap on main)."""
        from gitvault.model import access

        store = self.store

        def build(main: Any) -> tuple[Any, Any]:
            rules = change(access.load(store, main.tree))
            return access.rules_commit(store, main, rules, by, what, self.clock()), rules

        return commit_on_main(store, f"access: {what}", build)[0]

    def sign_with(self, key: str | None) -> None:
        """Sign this handle's agent commits with ``key`` (a private key, or a .pub that
        ssh-agent holds); None: leave them unsigned."""
        assert isinstance(self.store.sign, signing.CommitSigner)
        self.store.sign.agent = signing.make_signer(key)

    def allowed_signers(self) -> list[signing.SignerLine]:
        """The allowed signers on main."""
        from gitvault.engine import signers

        return signers.load_main(self.store)

    def _change_signers(self, change: Any, by: str, what: str) -> str:
        from gitvault.engine import signers

        store = self.store

        def build(main: Any) -> tuple[Any, Any]:
            lines = change(signers.load(store, main.tree))
            return signers.signers_commit(store, main, lines, by, what, self.clock()), lines

        return commit_on_main(store, f"keys: {what}", build)[0]

    def add_key(
        self, agent: str, pub: str, valid_after: str | None = None, by: str = "gitvault"
    ) -> str:
        """Allow ``agent`` to sign with the public key in file ``pub`` (a commit on main)."""
        from gitvault.engine import signers

        return self._change_signers(
            signers.add(agent, pub, valid_after, self.clock()), by, f"add key of {agent}"
        )

    def revoke_key(self, agent: str, key: str, by: str = "gitvault") -> str:
        """End ``agent``'s key now: older commits stay verified, newer ones are refused."""
        from gitvault.engine import signers

        return self._change_signers(
            signers.revoke(agent, key, self.clock()), by, f"revoke key of {agent}"
        )

    def verdict(self, rev: str | None = None, at: str | None = None) -> verification.Verdict:
        """What the signature of one commit proves (main's allowed signers)."""
        from gitvault.history import revision

        with trust.verifier(self.store) as ver:
            return ver.check(revision(self.store, rev, at))

    def verify(
        self, rev: str | None = None, require: str = "all", fresh: bool = False
    ) -> trust.VerifyReport:
        """Check every commit reachable from ``rev`` (see :func:`gitvault.engine.trust.verify`)."""
        return trust.verify(self.store, rev, require, fresh)
