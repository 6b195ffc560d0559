"""A private Postfix instance for tests: its own config_directory, queue_directory and
data_directory under a temporary directory, listening on 127.0.0.1:PORT, never touching
the system's /etc/postfix instance.

``FailingPostfix`` accepts mail for ``rcpt.test``, then fails to deliver it (its own
second listener refuses it with ``550 5.1.1``), so it writes its own DSN (RFC 3464) and
sends it, as any of its mail, to ``relayhost``: the inbound listener of the vmta under
test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.free_ports import free_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
START_DEADLINE = 60.0  # bounds a hang on a loaded machine; measures nothing

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.rcpt.test
mydomain = rcpt.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains = rcpt.test
relay_recipient_maps =
# Accepted here, then passed to the second listener below, which refuses it: Postfix
# then writes the DSN. (An ``error:`` transport for the domain is refused at RCPT by
# smtpd already, synchronously, which is not what this peer is for.)
transport_maps = inline:{{ rcpt.test=smtp:[127.0.0.1]:{refuser_port} }}
refusing_restrictions = check_recipient_access
    inline:{{ {{ rcpt.test = 550 5.1.1 mailbox unavailable }} }}
relayhost = [127.0.0.1]:{relayhost_port}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
biff = no
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
"""

MASTER_CF = """\
127.0.0.1:{port} inet n - n - 10 smtpd
127.0.0.1:{refuser_port} inet n - n - 10 smtpd -o myhostname=refuser.rcpt.test
  -o smtpd_recipient_restrictions=$refusing_restrictions
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


class FailingPostfix:
    def __init__(self, relayhost_port: int) -> None:
        # Not under pytest's tmp_path: Postfix's unprivileged processes must reach it, and
        # pytest's base directory is private to root (mode 0700).
        self.directory = Path(tempfile.mkdtemp(prefix="vmta-postfix-"))
        self.directory.chmod(0o755)
        self.relayhost_port = relayhost_port
        self.port = free_port()
        self.refuser_port = free_port()
        self.started = False

    @property
    def config(self) -> Path:
        return self.directory / "etc"

    def _postfix(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config), action],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def log(self) -> str:
        path = self.directory / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> FailingPostfix:
        for sub in ("etc", "queue", "data"):
            (self.directory / sub).mkdir(parents=True)
        shutil.chown(self.directory / "data", "postfix")
        (self.config / "main.cf").write_text(
            MAIN_CF.format(
                dir=self.directory,
                relayhost_port=self.relayhost_port,
                refuser_port=self.refuser_port,
            )
        )
        (self.config / "master.cf").write_text(
            MASTER_CF.format(port=self.port, refuser_port=self.refuser_port)
        )
        self.started = True
        done = self._postfix("start")
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed: {done.stdout}{done.stderr}\n{self.log()}")
        deadline = time.monotonic() + START_DEADLINE
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    if sock.recv(100).startswith(b"220"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix did not answer on {self.port}:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if not self.started:
            return
        if self._postfix("stop").returncode != 0:
            self._postfix("abort")
        self.started = False
        shutil.rmtree(self.directory, ignore_errors=True)
