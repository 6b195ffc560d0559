"""What a process of a plain node imports: each client library is loaded only where it is
used, because every one is megabytes in every process of the node (docs/PERFORMANCE.md,
"Memory, round 4"). Checked in a fresh interpreter that builds a worker's data plane the
way `vmta serve` does, on a migrated SQLite store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vmta.store.store import Store

# Client libraries a node needs only with the setting that names them (VMTA_REDIS_URL,
# VMTA_RABBITMQ_URL, VMTA_EVENTS_HTTP_URL), only to migrate a schema (Alembic, Mako), or
# only once it is used: a DKIM key read (cryptography), an MX looked up (dnspython), a
# bounce in a format of its own parsed (flufl.bounce), a console page shown (Jinja2).
LAZY = ("cryptography", "dns", "flufl")
OPTIONAL = ("alembic", "mako", "redis", "aio_pika", "aiormq", "httpx", *LAZY)
# And these in `vmta serve` (which also serves the API) until they are used.
OPTIONAL_IN_SERVE = (*LAZY, "jinja2")

PROBE = """
import sys
from pathlib import Path
from vmta.runtime.data_plane import data_plane_for
from vmta.runtime.settings import load_settings
from vmta.store.store import Store

directory = Path(sys.argv[1])
settings = load_settings(environ={"VMTA_DATA_DIR": str(directory), "VMTA_WORKERS": "2"})
store = Store.open(f"sqlite:///{directory / 'vmta.db'}")
data_plane_for(store, settings, worker=1)
store.close()
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.one_database
def test_a_worker_without_redis_rabbitmq_or_http_events_imports_none_of_their_clients(
    tmp_path: Path,
) -> None:
    Store.open(f"sqlite:///{tmp_path / 'vmta.db'}").close()  # migrated, as by the parent
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    imported = set(done.stdout.split())
    assert "vmta" in imported  # the probe ran
    assert imported.isdisjoint(OPTIONAL), sorted(imported & set(OPTIONAL))


SERVE_PROBE = """
import sys
import vmta.runtime.server
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_the_serving_process_imports_signing_bounce_formats_and_templates_only_when_used() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    imported = set(done.stdout.split())
    assert {"vmta", "fastapi"} <= imported  # the probe ran
    assert imported.isdisjoint(OPTIONAL_IN_SERVE), sorted(imported & set(OPTIONAL_IN_SERVE))


# A command other than `vmta sink` (here `vmta db current`, after the parser that
# `vmta --help` prints is built): the sink's SMTP server library is not loaded.
CLI_PROBE = """
import contextlib
import io
import sys
from vmta.cli import build_parser, main

build_parser().format_help()
with contextlib.redirect_stdout(io.StringIO()):
    status = main(["db", "current", "--data-dir", sys.argv[1]])
print(status, " ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_a_command_other_than_sink_does_not_import_the_sinks_smtp_server(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLI_PROBE, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status, *imported = done.stdout.split()
    assert status == "0", done.stderr
    assert {"vmta", "sqlalchemy"} <= set(imported)  # the probe ran the command
    assert "aiosmtpd" not in imported
