"""The programs of the relay benchmark: a counting smtp-sink, `vmta serve` relaying to it
through a relay server VirtualMTA, and a private Postfix instance relaying to it; for the
DKIM variant, one signing key and an OpenDKIM milter that signs Postfix's mail with it.

Each is a context manager that starts the program on free ports of 127.0.0.1, waits until
it answers (bounded), and stops it afterwards. Nothing touches the system's Postfix: the
private instance has its own config_directory, queue_directory and data_directory.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from process_tree import ProcessTree

FROM = "sender@bench.test"
TO = "rcpt@sink.test"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
OPENDKIM = shutil.which("opendkim") or "/usr/sbin/opendkim"
DKIM_DOMAIN = FROM.rpartition("@")[2]  # both relays sign for the From domain
DKIM_SELECTOR = "bench"
VMTA = Path(sys.executable).with_name("vmta")
TOKEN = "relay-bench-token-0123456789abcdefghij"  # a throw-away secret for a throw-away vmta
START_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def smtp_reply(stream: BinaryIO) -> tuple[int, str]:
    """One SMTP reply, multi-line ones included (RFC 5321 §4.2.1)."""
    lines = []
    for _ in range(1000):
        line = stream.readline()
        if not line:
            raise RuntimeError("connection closed")
        lines.append(line.decode("utf-8", "replace").rstrip())
        if line[3:4] != b"-":
            return int(line[:3]), " / ".join(lines)
    raise RuntimeError("reply longer than 1000 lines")


def wait_for_banner(port: int, what: str, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{what} exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                if sock.makefile("rb").readline().startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not answer on 127.0.0.1:{port} within {START_SECONDS:.0f} s")


class _Managed:
    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def _end(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


class DkimKey:
    """One RSA key that both relays sign with (RFC 6376 §3.3.3: 2048 bits, as providers
    ask of bulk senders)."""

    def __init__(self, bits: int = 2048) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.bits = bits
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, as opendkim-genkey
            serialization.NoEncryption(),
        ).decode("ascii")
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_b64 = base64.b64encode(der).decode("ascii")

    def txt_record(self) -> bytes:
        """What ``<selector>._domainkey.<domain>`` would publish (RFC 6376 §3.6.1)."""
        return f"v=DKIM1; k=rsa; p={self.public_b64}".encode("ascii")


OPENDKIM_CONF = """\
# A private OpenDKIM for the benchmark: signs what Postfix relays, like a production milter.
Syslog no
Mode s
Domain {domain}
Selector {selector}
KeyFile {key}
Socket inet:{port}@127.0.0.1
Canonicalization relaxed/relaxed
SignatureAlgorithm rsa-sha256
OversignHeaders From
RequireSafeKeys false
UserID postfix
PidFile {dir}/opendkim.pid
"""


class OpenDkim(_Managed):
    """`opendkim -f` in signing mode with the benchmark's key, a milter on 127.0.0.1."""

    def __init__(self, directory: Path, key: DkimKey) -> None:
        self.directory = directory
        self.key = key
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True)
        key_file = self.directory / "bench.private"
        key_file.write_text(self.key.private_pem)
        shutil.chown(key_file, "postfix")
        key_file.chmod(0o600)
        conf = self.directory / "opendkim.conf"
        conf.write_text(
            OPENDKIM_CONF.format(
                domain=DKIM_DOMAIN,
                selector=DKIM_SELECTOR,
                key=key_file,
                port=self.port,
                dir=self.directory,
            )
        )
        shutil.chown(self.directory, "postfix")
        with (self.directory / "opendkim.log").open("wb") as log:
            self.process = subprocess.Popen(
                [OPENDKIM, "-f", "-x", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_SECONDS
        while True:  # a milter has no banner: wait until it accepts connections
            if self.process.poll() is not None:
                log_text = (self.directory / "opendkim.log").read_text(errors="replace")
                raise SystemExit(f"opendkim exited with {self.process.returncode}: {log_text}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("opendkim did not listen within 60 s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        _end(self.process)


class Sink(_Managed):
    """smtp-sink -c: it prints "sess=N quit=N mesg=N" and a carriage return each time a
    message ends (flushed at once); ``count`` reads what has accumulated."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._pending = b""
        self._count = 0
        self.changed_at = 0.0  # perf_counter of the read that saw the latest count

    def start(self) -> None:
        user = ["-u", "postfix"] if os.geteuid() == 0 else []  # it refuses to run as root
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [SMTP_SINK, "-c", *user, f"127.0.0.1:{self.port}", "1024"],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        wait_for_banner(self.port, "smtp-sink", self.process)

    def count(self) -> int:
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        for _ in range(1000):  # the pipe holds 64 KB: a few reads at most
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._pending += chunk
        records, _, self._pending = self._pending.rpartition(b"\r")
        if records:
            found = re.search(rb"mesg=(\d+)$", records)
            if found and int(found.group(1)) != self._count:
                self._count = int(found.group(1))
                self.changed_at = time.perf_counter()
        return self._count

    def stop(self) -> None:
        _end(self.process)


class Vmta(_Managed):
    """`vmta serve` with a fresh data directory; every message goes to the sink through a
    relay server VirtualMTA that is the default VirtualMTA."""

    name = "vmta"

    def __init__(
        self,
        directory: Path,
        sink_port: int,
        connections: int,
        *,
        per_hour: int = 0,
        env: dict[str, str] | None = None,
        dkim: DkimKey | None = None,
    ) -> None:
        self.directory = directory
        self.dkim = dkim  # signs every message with it: the From domain's default key
        self.sink_port = sink_port
        self.connections = connections
        self.per_hour = per_hour  # the relay server's max_messages_per_hour (0: none)
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.smtp_port = 0
        self.api = ""

    def tree(self) -> ProcessTree:
        assert self.process is not None
        return ProcessTree(self.process.pid)

    def start(self) -> None:
        self.directory.mkdir(parents=True)
        log_path = self.directory / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMTA_")}
        env["VMTA_API_TOKEN"] = TOKEN
        # Benchmarks' MX hosts (if any) are sinks on loopback, which production refuses as
        # mail loops; relay servers' destinations are used as configured anyway.
        env["VMTA_MX_ALLOW_LOOPBACK"] = "true"
        env.update(self.extra_env)
        command = [str(VMTA), "serve", "--data-dir", str(self.directory / "data")]
        command += ["--listen", "127.0.0.1:0", "--smtp-listen", "127.0.0.1:0"]
        command += ["--hostname", "vmta-bench.test"]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_SECONDS
        while True:
            text = log_path.read_text(errors="replace")
            api = re.search(r"API listening on (http://\S+)", text)
            smtp = re.search(r"SMTP listening on 127\.0\.0\.1:(\d+)", text)
            if api and smtp:
                self.api, self.smtp_port = api.group(1), int(smtp.group(1))
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"vmta serve did not start:\n{text}")
            time.sleep(0.1)
        relay = {
            "name": "sink",
            "source_ip": {"ip": "127.0.0.1", "hostname": "vmta-bench.test"},
            "destination": {"hostname": "127.0.0.1", "port": self.sink_port},
            "throttle_limits": {
                "max_concurrent_connections": self.connections,
                "max_messages_per_hour": self.per_hour,
            },
        }
        self._call("POST", "/ga/api/v3/eng/relay_servers", {"relay_server": relay})
        self._call("PUT", "/ga/api/v3/eng/virtual_mtas/default", {"virtual_mta": {"name": "sink"}})
        if self.dkim is not None:
            key = {
                "domain": DKIM_DOMAIN,
                "selector": DKIM_SELECTOR,
                "default_for_domain": True,
                "key": {"private": self.dkim.private_pem},
            }
            self._call("POST", "/ga/api/v3/eng/dkim_keys", {"dkim_key": key})
        wait_for_banner(self.smtp_port, "vmta", self.process)

    def _call(self, method: str, path: str, body: object) -> None:
        request = urllib.request.Request(
            self.api + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        if not answer.get("success"):
            raise SystemExit(f"{method} {path} failed: {answer}")

    def stop(self) -> None:
        _end(self.process)


MAIN_CF = """\
# A private instance for the benchmark: nothing here touches /etc/postfix's instance.
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix-bench.test
mydomain = bench.test
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 no local delivery in this benchmark
alias_maps =
alias_database =
relayhost = [127.0.0.1]:{sink}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
default_destination_concurrency_limit = {connections}
smtp_destination_concurrency_limit = {connections}
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
{milter}
# Logging stays inside the measured process tree (postlogd), as vmta's delivery log does.
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
"""

# Debian's services, without chroot (the queue directory has no copy of /etc).
MASTER_CF = """\
127.0.0.1:{port} inet n - n - {smtpd} smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


class Postfix(_Managed):
    """A private Postfix: `postfix -c DIR/etc start`, relayhost = the sink."""

    name = "postfix"

    def __init__(
        self,
        directory: Path,
        sink_port: int,
        connections: int,
        sessions: int,
        dkim: DkimKey | None = None,
    ) -> None:
        self.directory = directory
        # With a key, Postfix signs through an OpenDKIM milter (Postfix's MILTER_README),
        # and the milter's CPU and memory count as Postfix's.
        self.opendkim = OpenDkim(directory / "opendkim", dkim) if dkim is not None else None
        self.sink_port = sink_port
        self.connections = connections
        self.sessions = sessions
        self.smtp_port = free_port()
        self.started = False

    @property
    def config(self) -> Path:
        return self.directory / "etc"

    def master_pid(self) -> int | None:
        try:
            return int((self.directory / "queue" / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def tree(self) -> ProcessTree:
        pid = self.master_pid()
        if pid is None:
            raise SystemExit("Postfix's master.pid is missing")
        if self.opendkim is not None and self.opendkim.process is not None:
            return ProcessTree(pid, self.opendkim.process.pid)
        return ProcessTree(pid)

    def _postfix(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config), action],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start(self) -> None:
        for sub in ("etc", "queue", "data"):
            (self.directory / sub).mkdir(parents=True)
        shutil.chown(self.directory / "data", "postfix")  # master.lock, as Debian has it
        milter = ""
        if self.opendkim is not None:
            self.opendkim.start()
            # tempfail: a milter that fails must not let unsigned mail through
            milter = (
                f"smtpd_milters = inet:127.0.0.1:{self.opendkim.port}\n"
                "non_smtpd_milters = $smtpd_milters\nmilter_default_action = tempfail"
            )
        (self.config / "main.cf").write_text(
            MAIN_CF.format(
                dir=self.directory,
                sink=self.sink_port,
                connections=self.connections,
                milter=milter,
            )
        )
        (self.config / "master.cf").write_text(
            MASTER_CF.format(port=self.smtp_port, smtpd=max(100, self.sessions + 10))
        )
        self.started = True
        done = self._postfix("start")
        if done.returncode != 0:
            log = self.directory / "maillog"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise SystemExit(f"postfix start failed: {done.stdout}{done.stderr}\n{tail}")
        wait_for_banner(self.smtp_port, "Postfix", None)

    def stop(self) -> None:
        if self.opendkim is not None:
            self.opendkim.stop()
        if not self.started:
            return
        pid = self.master_pid()
        self._postfix("stop")
        deadline = time.monotonic() + 30
        while pid is not None and Path(f"/proc/{pid}").exists():
            if time.monotonic() > deadline:
                self._postfix("abort")
                break
            time.sleep(0.1)


class CaptureSink(_Managed):
    """An in-process SMTP server (aiosmtpd) that keeps every message it receives, to look
    at what a relay really sent (the DKIM variant verifies a signature on it)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[bytes] = []
        self._controller: object | None = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        sink = self

        class Keep:
            async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
                sink.messages.append(bytes(envelope.original_content))  # type: ignore[attr-defined]
                return "250 kept"

        controller = Controller(Keep(), hostname="127.0.0.1", port=self.port)
        controller.start()
        self._controller = controller

    def wait_for(self, count: int, max_seconds: float = 60.0) -> list[bytes]:
        deadline = time.monotonic() + max_seconds
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"the capture sink received {len(self.messages)} of {count}")
            time.sleep(0.05)
        return self.messages

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()  # type: ignore[attr-defined]
