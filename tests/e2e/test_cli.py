"""The real `vmta` command, run as a subprocess: serve, signals, start-up failures,
credentials, VMTA_API_TOKEN, database migrations and where settings come from."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import smtplib
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.free_ports import free_port
from vmta.api.auth import CACHE_SECONDS
from vmta.runtime.startup_report import hostname_problem
from vmta.store.credentials import CredentialRepository
from vmta.store.database import head_revision, revision_chain
from vmta.store.store import Store

VMTA = Path(sys.executable).with_name("vmta")
GA_LIST = "/ga/api/v3/eng/relay_servers"
PASSWORD = "Pw-never-shown-7f3a9c"  # must not appear in any output
API_TOKEN = "vmta-env-token-0123456789abcdefghij"
START_DEADLINE = 30.0  # seconds; generous for a loaded machine, not a measurement
STOP_DEADLINE = 20.0
LISTENING = re.compile(r"API listening on http://(127\.0\.0\.1:\d+)")


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without any VMTA_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMTA_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # tests/e2e/serve_process.py says why
    env.update(extra)
    return env


def vmta(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VMTA), *args],
        cwd=cwd,
        env=env or environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def basic(name: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def wait_until(check: Callable[[], bool], deadline: float, what: str) -> None:
    """Poll ``check`` until it holds; fail after ``deadline`` seconds (a bound on a hang,
    not a timing assertion)."""
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.05)


@dataclass
class Server:
    """One `vmta serve` process; its stdout and stderr go to ``log_path``."""

    cwd: Path
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""
    clients: list[httpx.Client] = field(default_factory=list)

    def start(self) -> Server:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(VMTA), "serve", *self.args],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        found: list[str] = []

        def listening() -> bool:
            found[:] = LISTENING.findall(self.log())
            if not found and self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"vmta serve exited with {self.proc.returncode}:\n{self.log()}")
            return bool(found)

        wait_until(listening, START_DEADLINE, "vmta serve to log where it listens")
        self.address = found[-1]
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def smtp_address(self) -> tuple[str, int]:
        found = re.findall(r"SMTP listening on (127\.0\.0\.1):(\d+)", self.log())
        assert found, self.log()
        return found[-1][0], int(found[-1][1])

    def client(self, headers: dict[str, str] | None = None) -> httpx.Client:
        client = httpx.Client(
            base_url=f"http://{self.address}", headers=headers or {}, timeout=10.0
        )
        self.clients.append(client)
        return client

    def status(self, path: str, headers: dict[str, str] | None = None) -> int:
        with httpx.Client(base_url=f"http://{self.address}", timeout=10.0) as client:
            return client.get(path, headers=headers or {}).status_code

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"vmta serve did not stop within {STOP_DEADLINE} s after {sig.name}")

    def kill(self) -> None:
        for client in self.clients:
            client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``servers(*args, env=...)`` starts `vmta serve ARGS` in tmp_path on free
    API and SMTP ports; every server still running at the end is killed."""
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        server = Server(
            cwd=tmp_path,
            args=["--listen", "127.0.0.1:0", "--smtp-listen", "127.0.0.1:0", *args],
            env=env or environment(),
            log_path=tmp_path / f"serve-{len(started)}.log",
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


def assert_clean(log: str) -> None:
    assert "Traceback" not in log
    if hostname_problem(socket.getfqdn()) is not None:
        # This host's own name is no FQDN (a container's "localhost"): the default host
        # name, and vmta says so loudly at start, by design (runtime/startup_report.py).
        log = "\n".join(line for line in log.splitlines() if " WARNING vmta.startup: " not in line)
    assert " ERROR " not in log and " WARNING " not in log and " CRITICAL " not in log


# ---- serve -----------------------------------------------------------------------------


def test_first_start_serves_the_api_with_a_fresh_admin_token(
    servers: Callable[..., Server], tmp_path: Path
) -> None:
    server = servers()  # default data directory: ./vmta-data

    data_dir = tmp_path / "vmta-data"
    token_file = data_dir / "admin-token"
    assert (data_dir / "vmta.db").is_file()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    secret = token_file.read_text(encoding="ascii").strip()

    health = server.client().get("/api/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok", "dependencies": {}})
    assert server.status(GA_LIST) == 401
    assert server.status(GA_LIST, bearer(secret)) == 200
    assert server.status(GA_LIST, basic("admin", secret)) == 200
    assert server.status(GA_LIST, bearer(secret + "x")) == 401

    log = server.log()
    port = int(server.address.rsplit(":", 1)[1])
    assert port != 0
    assert f"API listening on http://127.0.0.1:{port}" in log
    assert str(token_file.resolve()) in log  # says where the secret is...
    assert secret not in log  # ...never the secret itself
    assert_clean(log)


def test_restart_keeps_the_admin_secret(servers: Callable[..., Server], tmp_path: Path) -> None:
    first = servers("--data-dir", "data")
    secret = (tmp_path / "data" / "admin-token").read_text(encoding="ascii").strip()
    assert first.stop() == 0

    second = servers("--data-dir", "data")
    assert (tmp_path / "data" / "admin-token").read_text(encoding="ascii").strip() == secret
    assert second.status(GA_LIST, bearer(secret)) == 200
    assert "created credential" not in second.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_stops_cleanly_on_signal(servers: Callable[..., Server], sig: signal.Signals) -> None:
    server = servers("--data-dir", "data")
    # An idle keep-alive connection must not hold the stop up.
    client = server.client()
    assert client.get("/api/health").status_code == 200

    assert server.stop(sig) == 0

    log = server.log()
    assert f"stopping: received {sig.name}" in log
    assert log.rstrip().endswith("stopped")
    assert_clean(log)
    # The port is free again.
    host, port = server.address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))


def test_taken_port_fails_fast_naming_the_address(
    servers: Callable[..., Server], tmp_path: Path
) -> None:
    running = servers("--data-dir", "first")

    result = vmta(
        "serve",
        *("--listen", running.address, "--smtp-listen", "127.0.0.1:0"),
        *("--data-dir", "second"),
        cwd=tmp_path,
    )

    assert result.returncode == 1
    assert result.stderr.strip() == f"vmta: API address {running.address} is already in use"
    assert not (tmp_path / "second").exists()  # failed before creating anything
    assert running.status("/api/health") == 200


def test_port_held_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        address = f"127.0.0.1:{blocker.getsockname()[1]}"
        result = vmta("serve", "--listen", address, "--smtp-listen", "127.0.0.1:0", cwd=tmp_path)
    assert result.returncode == 1
    assert f"API address {address} is already in use" in result.stderr
    assert "Traceback" not in result.stderr


# ---- a database that cannot be opened ------------------------------------------------


def _pg_refused(tmp_path: Path) -> tuple[str, str]:
    port = free_port()
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/test"
    return url, f"cannot open database postgresql+psycopg://postgres:***@127.0.0.1:{port}/test"


def _sqlite_missing_dir(tmp_path: Path) -> tuple[str, str]:
    missing = tmp_path / "no" / "such"
    return f"sqlite:///{missing}/vmta.db", f"directory {missing} does not exist"


def _sqlite_not_a_database(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not an SQLite database, just some bytes " * 100)
    return f"sqlite:///{path}", "file is not a database"


def _not_a_url(tmp_path: Path) -> tuple[str, str]:
    return f"postgres//postgres:{PASSWORD}@127.0.0.1/test", "the database URL is not a valid URL"


def _unsupported(tmp_path: Path) -> tuple[str, str]:
    return f"mysql://root:{PASSWORD}@127.0.0.1/vmta", "unsupported database 'mysql'"


BAD_DATABASES = {
    "pg-refused": _pg_refused,
    "sqlite-missing-dir": _sqlite_missing_dir,
    "sqlite-not-a-database": _sqlite_not_a_database,
    "not-a-url": _not_a_url,
    "unsupported": _unsupported,
}
COMMANDS = {
    "serve": ["serve", "--listen", "127.0.0.1:0", "--smtp-listen", "127.0.0.1:0"],
    "db-upgrade": ["db", "upgrade"],
    "credentials-list": ["credentials", "list"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", BAD_DATABASES)
def test_unopenable_database_fails_with_a_clear_message(
    tmp_path: Path, case: str, command: str
) -> None:
    url, expected = BAD_DATABASES[case](tmp_path)

    result = vmta(*COMMANDS[command], cwd=tmp_path, env=environment(VMTA_DATABASE_URL=url))

    assert result.returncode == 1
    output = result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmta: "), output
    assert expected in lines[0]
    assert "Traceback" not in output
    assert PASSWORD not in output


# ---- credentials -----------------------------------------------------------------------


def test_credentials_create_list_revoke(servers: Callable[..., Server], tmp_path: Path) -> None:
    server = servers("--data-dir", "data")
    admin_secret = (tmp_path / "data" / "admin-token").read_text(encoding="ascii").strip()

    created = vmta("credentials", "create", "ops", "--data-dir", "data", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert re.fullmatch(r"vmta_[A-Za-z0-9_-]{43}", secret)
    assert server.status(GA_LIST, bearer(secret)) == 200
    assert server.status(GA_LIST, basic("ops", secret)) == 200

    listed = vmta("credentials", "list", "--data-dir", "data", cwd=tmp_path)
    assert listed.returncode == 0
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["admin", "ops"]
    for hidden in (secret, admin_secret):
        assert hidden not in listed.stdout
        assert hashlib.sha256(hidden.encode()).hexdigest() not in listed.stdout

    revoked = vmta("credentials", "revoke", "ops", "--data-dir", "data", cwd=tmp_path)
    assert revoked.returncode == 0
    # The server caches a positive answer for CACHE_SECONDS: the revoked secret must
    # stop working once that has passed.
    wait_until(
        lambda: (
            server.status(GA_LIST, bearer(secret)) == 401
            and server.status(GA_LIST, basic("ops", secret)) == 401
        ),
        CACHE_SECONDS + 10,
        "the revoked secret to be refused",
    )
    assert server.status(GA_LIST, bearer(admin_secret)) == 200

    listed = vmta("credentials", "list", "--data-dir", "data", cwd=tmp_path)
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["admin"]


def test_create_again_renews_the_secret(servers: Callable[..., Server], tmp_path: Path) -> None:
    server = servers("--data-dir", "data")
    old = vmta("credentials", "create", "ci", "--data-dir", "data", cwd=tmp_path).stdout.strip()
    new = vmta("credentials", "create", "ci", "--data-dir", "data", cwd=tmp_path).stdout.strip()
    assert old != new
    assert server.status(GA_LIST, bearer(old)) == 401  # never used, so never cached
    assert server.status(GA_LIST, bearer(new)) == 200


def test_revoke_unknown_name_fails(tmp_path: Path) -> None:
    result = vmta("credentials", "revoke", "nobody", "--data-dir", "data", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "vmta: no credential named 'nobody'"


def test_create_with_a_bad_name_is_a_usage_error(tmp_path: Path) -> None:
    result = vmta("credentials", "create", "no spaces", "--data-dir", "data", cwd=tmp_path)
    assert result.returncode == 2
    assert "a credential name is 1-200 characters" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()


# ---- VMTA_API_TOKEN --------------------------------------------------------------------


@pytest.mark.slow(16)
def test_api_token_sets_the_admin_secret(servers: Callable[..., Server], tmp_path: Path) -> None:
    token_file = tmp_path / "data" / "admin-token"
    first = servers("--data-dir", "data")
    generated = token_file.read_text(encoding="ascii").strip()
    assert first.stop() == 0

    second = servers("--data-dir", "data", env=environment(VMTA_API_TOKEN=API_TOKEN))
    assert second.status(GA_LIST, bearer(API_TOKEN)) == 200
    assert second.status(GA_LIST, basic("admin", API_TOKEN)) == 200
    assert second.status(GA_LIST, bearer(generated)) == 401
    assert not token_file.exists()  # it held a secret that no longer works
    assert API_TOKEN not in second.log()
    assert second.stop() == 0

    rotated = API_TOKEN[::-1]
    third = servers("--data-dir", "data", env=environment(VMTA_API_TOKEN=rotated))
    assert third.status(GA_LIST, bearer(rotated)) == 200
    assert third.status(GA_LIST, bearer(API_TOKEN)) == 401
    assert third.stop() == 0

    # An operator-chosen secret is kept salted and slow (scrypt), never as SHA-256.
    store = Store.open(f"sqlite:///{tmp_path / 'data' / 'vmta.db'}")
    try:
        with store.read() as conn:
            stored = CredentialRepository(conn).by_name("admin")
    finally:
        store.close()
    assert stored is not None and stored.secret_sha256.startswith("scrypt$")
    assert hashlib.sha256(rotated.encode()).hexdigest() not in stored.secret_sha256


@pytest.mark.slow(17)
def test_submit_credentials_inject_only(servers: Callable[..., Server], tmp_path: Path) -> None:
    server = servers("--data-dir", "data")
    created = vmta(
        "credentials", "create", "sender", "--scope", "submit", "--data-dir", "data", cwd=tmp_path
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    listed = vmta("credentials", "list", "--data-dir", "data", cwd=tmp_path)
    scopes = {line.split("\t")[0]: line.split("\t")[-1] for line in listed.stdout.splitlines()}
    assert scopes == {"admin": "admin", "sender": "submit"}
    # The API refuses it (403, the family's format); SMTP AUTH takes it.
    assert server.status(GA_LIST, bearer(secret)) == 403
    assert server.status("/v1/externalmtas", basic("sender", secret)) == 403
    with smtplib.SMTP(*server.smtp_address(), timeout=30) as client:
        client.ehlo()
        client.user, client.password = "sender", secret
        assert client.auth("PLAIN", client.auth_plain)[0] == 235
    # Renewing its secret keeps its scope.
    renewed = vmta("credentials", "create", "sender", "--data-dir", "data", cwd=tmp_path)
    assert renewed.returncode == 0
    listed = vmta("credentials", "list", "--data-dir", "data", cwd=tmp_path)
    assert "sender\t" in listed.stdout and listed.stdout.rstrip().endswith("submit")


def test_api_token_too_short_is_refused_without_echo(tmp_path: Path) -> None:
    short = "Short-Token-9"
    result = vmta("serve", cwd=tmp_path, env=environment(VMTA_API_TOKEN=short))
    assert result.returncode == 1
    assert result.stderr.startswith("vmta: VMTA_API_TOKEN must be at least 24 characters")
    assert short not in result.stdout + result.stderr


# ---- database migrations ----------------------------------------------------------------


def test_db_upgrade_and_current(db_url: str, tmp_path: Path) -> None:
    env = environment(VMTA_DATABASE_URL=db_url)
    head = head_revision()

    chain = revision_chain()
    assert chain[-1] == head and chain[0] == "0001" and len(set(chain)) == len(chain)
    order = " -> ".join(chain)
    at_head = (
        f"{head} (head)\nmigrations in the order they apply: {order.replace(head, f'[{head}]')}\n"
        f"the database is at the latest migration, {head}\n"
    )

    before = vmta("db", "current", cwd=tmp_path, env=env)
    assert before.returncode == 0, before.stderr
    assert before.stdout == (
        f"none (head is {head}; run `vmta db upgrade`)\n"
        f"migrations in the order they apply: {order}\n"
    )

    for _ in range(2):  # the second upgrade has nothing to do and changes nothing
        upgraded = vmta("db", "upgrade", cwd=tmp_path, env=env)
        assert upgraded.returncode == 0, upgraded.stderr
        assert upgraded.stdout == at_head

    current = vmta("db", "current", cwd=tmp_path, env=env)
    assert current.stdout == at_head
    # The migrated database is usable by the other commands.
    assert vmta("credentials", "create", "x", cwd=tmp_path, env=env).returncode == 0
    assert vmta("credentials", "list", cwd=tmp_path, env=env).stdout.startswith("x\t")


def test_serve_on_postgresql_never_shows_the_password(
    servers: Callable[..., Server], pg_url: str
) -> None:
    url = make_url(pg_url).set(password=PASSWORD).render_as_string(hide_password=False)
    server = servers("--data-dir", "data", "--database-url", url)

    assert server.status("/api/health") == 200
    log = server.log()
    assert "store ready: postgresql+psycopg://postgres:***@" in log
    assert PASSWORD not in log
    assert server.stop() == 0
    assert PASSWORD not in server.log()


# ---- where settings come from ---------------------------------------------------------------


def test_flag_beats_env_beats_toml(tmp_path: Path, servers: Callable[..., Server]) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        config = tmp_path / "vmta.toml"
        # TOML asks for a taken port and one data directory; the environment names another
        # directory; the --listen flag (port 0) wins over the TOML port.
        config.write_text(
            f'api_listen = "127.0.0.1:{taken}"\ndata_dir = "from-toml"\n', encoding="utf-8"
        )
        server = servers("--config", str(config), env=environment(VMTA_DATA_DIR="from-env"))
        assert server.status("/api/health") == 200
    assert (tmp_path / "from-env" / "admin-token").is_file()
    assert not (tmp_path / "from-toml").exists()


def test_toml_file_from_vmta_config(tmp_path: Path) -> None:
    config = tmp_path / "vmta.toml"
    config.write_text('data_dir = "from-toml"\n', encoding="utf-8")
    result = vmta("credentials", "list", cwd=tmp_path, env=environment(VMTA_CONFIG=str(config)))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-toml" / "vmta.db").is_file()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VMTA_API_LISTEN": "everywhere"}, "vmta: VMTA_API_LISTEN must be HOST:PORT"),
        ({"VMTA_LOG_LEVEL": "chatty"}, "vmta: VMTA_LOG_LEVEL must be DEBUG, INFO, WARNING"),
        ({"VMTA_CONFIG": "/nonexistent/vmta.toml"}, "vmta: configuration file /nonexistent/"),
    ],
)
def test_bad_setting_fails_with_its_source_named(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = vmta("serve", cwd=tmp_path, env=environment(**env))
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vmta.cli", "db", "current", "--data-dir", "data"],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("none (head is ")
