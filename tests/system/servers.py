"""Real git servers for the system tests, started by the tests and stopped after them.

- **SSH**: OpenSSH's ``sshd`` plus gitolite3. gitolite's users are the agents' owners, each
  with its own key; the vaults are gitolite repositories carrying gitvault's hooks.
- **Smart HTTP**: Apache with ``git http-backend`` behind basic auth (``REMOTE_USER``) and
  ``receive-pack`` on. Credentials reach git only through its own ``store`` credential helper.

Both run on 127.0.0.1 on ephemeral ports, with every config file, key and repository in a
temporary folder, as a throwaway hosting account that the fixture creates (``useradd``) and
removes (``userdel``). Running as that account rather than root is what a real host does, and
it lets ``sshd`` run without the system's privilege-separation folder. No system service is
started, stopped or changed.

Missing programs skip the tests with the reason; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import gitvault
from gitvault import Vault
from gitvault.engine.install import SERVER_HOOKS, install
from gitvault.model.access import Rules

from ..conftest import EXAMPLE

SSHD = "/usr/sbin/sshd"
GITOLITE = "/usr/bin/gitolite"
GITOLITE_SHELL = "/usr/share/gitolite3/gitolite-shell"
APACHE = "/usr/sbin/apache2"
APACHE_MODULES = "/usr/lib/apache2/modules"
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
USERS = ("admin", "alice", "bob", "carol", "dave", "mallory")
ADMIN = "admin"
SETUP_SECONDS: dict[str, float] = {}  # fixture set-up wall times, printed after the run


def need(*programs: str) -> None:
    """Skip (fail under CI=true) when a program a server needs is not installed."""
    missing = [p for p in programs if not (os.path.exists(p) or shutil.which(p))]
    why = None
    if missing:
        why = (
            f"missing {', '.join(missing)}: install openssh-server, gitolite3 and apache2 "
            "(tools/install-system-deps.sh)"
        )
    elif os.geteuid() != 0:
        why = "the system tests create a throwaway hosting account, which needs root"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {why}")
        pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until the server accepts connections (the server's readiness, not a race)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server did not listen on {port}: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Account:
    """The throwaway hosting account: owns the repositories, runs the servers and hooks."""

    name: str
    uid: int
    gid: int
    root: Path  # a folder of its own, holding everything the servers use
    python: str = sys.executable  # what its hooks run (see hook_python)

    def run(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
        r = subprocess.run(
            list(args),
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            env={**self.env(), **(env or {})},
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {r.stdout}{r.stderr}")
        return r.stdout

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.root / "home"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "USER": self.name,
            "LANG": "C.UTF-8",
        }

    def give(self, path: Path) -> None:
        subprocess.run(["chown", "-R", f"{self.uid}:{self.gid}", str(path)], check=True)

    def popen(self, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "wb")  # noqa: SIM115  (closed by the server's exit)
        return subprocess.Popen(
            list(args),
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            env=self.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )


@pytest.fixture(scope="session")
def account() -> Iterator[Account]:
    need(SSHD, GITOLITE, APACHE, HTTP_BACKEND, "useradd", "userdel", "ssh-keygen")
    with hosting_account() as acct:
        yield acct


@contextlib.contextmanager
def hosting_account() -> Iterator[Account]:
    """Create the throwaway account (and its folder); remove both afterwards."""
    started = time.monotonic()
    name = "gvhost" + secrets.token_hex(3)
    root = Path(tempfile.mkdtemp(prefix="gitvault-host-"))
    root.chmod(0o755)
    (root / "home").mkdir()
    subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            str(root / "home"),
            "--shell",
            "/bin/sh",
            name,
        ],
        check=True,
    )
    try:
        subprocess.run(["usermod", "-p", "*", name], check=True)  # no password, not locked
        pw = pwd.getpwnam(name)
        acct = Account(name, pw.pw_uid, pw.pw_gid, root)
        acct.python = hook_python(acct)
        acct.give(root)
        SETUP_SECONDS["hosting account"] = time.monotonic() - started
        yield acct
    finally:
        subprocess.run(["userdel", name], check=False)
        shutil.rmtree(root, ignore_errors=True)


def _others_can_run(path: str) -> bool:
    """Whether a user who is neither owner nor group can execute ``path`` (every folder on
    the way must let others through)."""
    real = Path(os.path.realpath(path))
    if not os.stat(real).st_mode & stat.S_IXOTH:
        return False
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in real.parents)


def hook_python(acct: Account) -> str:
    """The interpreter the account's hooks run: this one, or, when it lives where the account
    cannot go (a pyenv under /root), the system Python of the same version loading this
    checkout and its environment's packages."""
    if _others_can_run(sys.executable) and _others_can_run(gitvault.__file__):
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = f"/usr/bin/{version}"
    site = [p for p in sys.path if p.endswith("site-packages") and _others_can_run(p)]
    checkout = str(Path(gitvault.__file__).resolve().parent.parent)
    if not os.path.exists(system) or not site or not _others_can_run(checkout):
        need(f"a {version} the hosting account may run (this one is {sys.executable})")
    wrapper = acct.root / "hook-python"
    wrapper.write_text(
        f"#!/bin/sh\nPYTHONPATH='{checkout}:{':'.join(site)}' exec {system} \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def new_vault(acct: Account, path: Path, admin: str, identity_from: str) -> Path:
    """A hosted vault at ``path`` (created by this checkout's gitvault, then given to the
    account): identity required and vouched for by the host, ``admin`` its admin, each user
    granted its own name and ``<user>-*``."""
    v = Vault.init(path, EXAMPLE)
    for key, value in (
        ("gitvault.fsync", "false"),
        ("gitvault.requireIdentity", "true"),
        ("gitvault.identityFrom", identity_from),
    ):
        subprocess.run(["git", "config", "-f", str(path / "config"), key, value], check=True)

    def rules(r: Rules) -> Rules:
        r = r.add_admin(admin)
        for user in USERS:
            if user != admin:
                r = r.grant(user, user).grant(user, f"{user}-*")
        return r

    v.change_access(rules, "gitvault", "hosting set-up")
    install(str(path / "hooks"), SERVER_HOOKS, python=acct.python)
    acct.give(path)
    return path


# -- SSH: sshd + gitolite ------------------------------------------------------------------
@dataclass
class Server:
    """One running transport: how to reach a vault on it as a given user."""

    kind: str
    port: int
    account: Account
    repos: Path
    ssh_config: Path | None = None
    vaults: list[str] = field(default_factory=list)

    def url(self, user: str, repo: str) -> str:
        if self.kind == "ssh":
            return f"ssh://{user}.gitvault.test/{repo}"
        return f"http://{user}@127.0.0.1:{self.port}/{repo}.git"

    def path(self, repo: str) -> Path:
        return self.repos / f"{repo}.git"

    def vault(self, repo: str, hooks: bool = True) -> Path:
        """A new hosted vault on this server (``hooks=False``: a host without custom hooks)."""
        path = self.path(repo)
        new_vault(self.account, path, ADMIN, "gitolite" if self.kind == "ssh" else "http")
        if not hooks:
            for name in ("pre-receive", "post-receive"):
                (path / "hooks" / name).unlink()
        if self.kind == "ssh":
            conf = self.account.root / "home" / ".gitolite" / "conf" / "gitolite.conf"
            self.vaults.append(repo)
            conf.write_text(gitolite_conf(self.vaults))
            self.account.run(GITOLITE, "setup")  # compile; adds gitolite's update hook
        return path


def gitolite_conf(vaults: Sequence[str]) -> str:
    # gitolite lets every user write every vault: who may act as which agent is gitvault's
    # rule (.gitvault/access.json), judged from the GL_USER gitolite sets
    lines = ["repo gitolite-admin", f"    RW+ = {ADMIN}", ""]
    for v in vaults:
        lines += [f"repo {v}", "    RW+ = @all", ""]
    return "\n".join(lines)


@pytest.fixture(scope="session")
def client_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clients")


@pytest.fixture(scope="session")
def ssh_server(account: Account, client_dir: Path) -> Iterator[Server]:
    with start_ssh(account, client_dir) as server:
        yield server


@contextlib.contextmanager
def start_ssh(account: Account, client_dir: Path) -> Iterator[Server]:
    """sshd (as the account) with gitolite behind it; clients use ``client_dir/ssh_config``."""
    started = time.monotonic()
    root = account.root / "ssh"
    root.mkdir()
    keys = client_dir / "keys"
    keys.mkdir()
    for user in USERS:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", user, "-f", str(keys / user)],
            check=True,
        )
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_ed25519")],
        check=True,
    )
    account.give(root)
    admin_pub = account.root / "home" / f"{ADMIN}.pub"
    shutil.copy(keys / f"{ADMIN}.pub", admin_pub)
    account.give(admin_pub)
    account.run(GITOLITE, "setup", "-pk", str(admin_pub))
    keydir = account.root / "home" / ".gitolite" / "keydir"
    for user in USERS:
        shutil.copy(keys / f"{user}.pub", keydir / f"{user}.pub")
    account.give(keydir)
    (account.root / "home" / ".gitolite" / "conf" / "gitolite.conf").write_text(gitolite_conf([]))
    account.run(GITOLITE, "setup")  # writes ~/.ssh/authorized_keys, one forced command a key
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {root / 'host_ed25519'}",
                f"PidFile {root / 'sshd.pid'}",
                f"AllowUsers {account.name}",
                f"AuthorizedKeysFile {account.root / 'home' / '.ssh' / 'authorized_keys'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PermitUserEnvironment no",
                "LogLevel ERROR",
                "MaxStartups 50",
                "",
            ]
        )
    )
    account.give(config)
    proc = account.popen([SSHD, "-D", "-e", "-f", str(config)], root / "sshd.log")
    try:
        wait_for_port(port, proc, root / "sshd.log")
        ssh_config = client_dir / "ssh_config"
        ssh_config.write_text(
            "".join(
                f"Host {u}.gitvault.test\n  HostName 127.0.0.1\n  Port {port}\n"
                f"  User {account.name}\n  IdentityFile {keys / u}\n  IdentitiesOnly yes\n"
                "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
                "  BatchMode yes\n"
                for u in USERS
            )
        )
        SETUP_SECONDS["sshd + gitolite"] = time.monotonic() - started
        yield Server(
            "ssh", port, account, account.root / "home" / "repositories", ssh_config=ssh_config
        )
    finally:
        stop(proc)


# -- HTTP: Apache + git http-backend ---------------------------------------------------------
PASSWORDS = {u: secrets.token_urlsafe(12) for u in USERS}
MODULES = (
    "mpm_prefork",
    "authn_core",
    "authn_file",
    "authz_core",
    "authz_user",
    "auth_basic",
    "alias",
    "cgi",
    "env",
)


def apache_conf(root: Path, port: int, repos: Path) -> str:
    lines = [
        f"ServerRoot {root}",
        f"Listen 127.0.0.1:{port}",
        "ServerName 127.0.0.1",
        f"PidFile {root / 'httpd.pid'}",
        f"DefaultRuntimeDir {root}",
        f"ErrorLog {root / 'error.log'}",
        "LogLevel warn",
        f"Mutex file:{root} default",
        "StartServers 4",
        "MinSpareServers 2",
        "MaxRequestWorkers 16",
    ]
    lines += [f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in MODULES]
    lines += [
        f"SetEnv GIT_PROJECT_ROOT {repos}",
        "SetEnv GIT_HTTP_EXPORT_ALL 1",
        f"ScriptAlias / {HTTP_BACKEND}/",
        "<Location />",
        "  AuthType Basic",
        "  AuthName gitvault",
        f"  AuthUserFile {root / 'htpasswd'}",
        "  Require valid-user",
        "</Location>",
        "",
    ]
    return "\n".join(lines)


@pytest.fixture(scope="session")
def http_server(account: Account, client_dir: Path) -> Iterator[Server]:
    with start_http(account, client_dir) as server:
        yield server


@contextlib.contextmanager
def start_http(account: Account, client_dir: Path) -> Iterator[Server]:
    """Apache (as the account) with git http-backend; passwords go to git's store helper."""
    started = time.monotonic()
    root = account.root / "http"
    repos = root / "repos"
    repos.mkdir(parents=True)
    (root / "htpasswd").write_text(
        "".join(
            f"{u}:{{SHA}}{base64.b64encode(hashlib.sha1(p.encode()).digest()).decode()}\n"
            for u, p in PASSWORDS.items()
        )
    )
    port = free_port()
    (root / "httpd.conf").write_text(apache_conf(root, port, repos))
    account.give(root)
    proc = account.popen(
        [APACHE, "-f", str(root / "httpd.conf"), "-DFOREGROUND"], root / "apache.log"
    )
    try:
        wait_for_port(port, proc, root / "apache.log")
        for user, password in PASSWORDS.items():  # into git's store helper, as a user would
            subprocess.run(
                ["git", "credential", "approve"],
                check=True,
                text=True,
                input=f"protocol=http\nhost=127.0.0.1:{port}\nusername={user}\n"
                f"password={password}\n\n",
            )
        SETUP_SECONDS["apache + http-backend"] = time.monotonic() - started
        yield Server("http", port, account, repos)
    finally:
        stop(proc)


@pytest.fixture(scope="session", autouse=True)
def _client_git(client_dir: Path) -> Iterator[None]:
    with client_git(client_dir):
        yield


@contextlib.contextmanager
def client_git(client_dir: Path) -> Iterator[None]:
    """Every git the tests run (and gitvault's own) reaches the servers like a user's would:
    ssh through a config naming each user's key, HTTP passwords from git's store helper."""
    gitconfig = client_dir / "gitconfig"
    gitconfig.write_text(
        f"[credential]\n\thelper = store --file={client_dir / 'credentials'}\n"
        "[safe]\n\tdirectory = *\n"
    )
    env = {
        "GIT_SSH_COMMAND": f"ssh -F {client_dir / 'ssh_config'}",
        "GIT_CONFIG_GLOBAL": str(gitconfig),
        "GIT_TERMINAL_PROMPT": "0",
    }
    import pygit2

    pygit2.option(pygit2.enums.Option.SET_OWNER_VALIDATION, 0)  # read the account's vaults
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("REMOTE_USER", raising=False)
        mp.delenv("GL_USER", raising=False)
        yield
