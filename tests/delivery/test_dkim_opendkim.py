"""A second, independent verifier: OpenDKIM (``opendkim -t``, the milter's own test mode,
``Mode v``) checks what a real sink received from vmta, looking the keys up in real DNS:
dnsmasq publishing the TXT records vmta's API returned (``v=DKIM1; `` prepended), reached
through OpenDKIM's resolver (libunbound forwarding to dnsmasq's port). One message carries
a default RSA key, an Ed25519 key picked by X-GreenArrow-DKIM, and MailerQ per-message keys
in all four canonicalizations; a tampered copy fails every signature."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import skip_or_fail
from tests.delivery.test_dkim_signing import World, message, pem_of, world
from tests.peers.dns import DnsmasqServer, DnsZone
from vmta.signing import keys as key_material

__all__ = ["world"]  # the fixture, shared with the dkimpy tests

CANONS = ("simple/simple", "simple/relaxed", "relaxed/simple", "relaxed/relaxed")
# One Authentication-Results entry per line (RFC 8601): its verdict and its selector.
_RESULT = re.compile(r"dkim=(\w+)[^\n]*?header\.s=(\S+)")


def opendkim_verdicts(data: bytes, dns: DnsmasqServer, tmp: Path) -> dict[str, str]:
    """OpenDKIM's verdict per selector (``pass``, ``fail``) on ``data``."""
    program = shutil.which("opendkim") or "/usr/sbin/opendkim"
    if not Path(program).exists():
        skip_or_fail("opendkim is not installed")
    resolver = tmp / "unbound.conf"
    resolver.write_text(
        'server:\n    do-not-query-localhost: no\n    module-config: "iterator"\n'
        # libunbound answers names under test. itself (RFC 6761) unless told not to.
        '    local-zone: "test." nodefault\n'
        f'forward-zone:\n    name: "."\n    forward-addr: {dns.host}@{dns.port}\n'
    )
    config = tmp / "opendkim.conf"
    # OpenDKIM checks 3 signatures unless told more (opendkim.conf(5)).
    config.write_text(
        f"Mode v\nSyslog no\nMaximumSignaturesToVerify 10\nResolverConfiguration {resolver}\n"
    )
    eml = tmp / "received.eml"
    eml.write_bytes(data)
    done = subprocess.run(
        [program, "-x", str(config), "-t", str(eml), "-vv"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    (tmp / "opendkim.out").write_text(output)
    header = output.split("hname='Authentication-Results'", 1)[-1]
    return {selector: verdict for verdict, selector in _RESULT.findall(header)}


@pytest.mark.one_database  # the signer's behaviour, the same on either database
async def test_opendkim_verifies_every_signature(
    world: World, dnsmasq: DnsmasqServer, tmp_path: Path
) -> None:
    await world.key(
        domain="from.test", selector="default", default_for_domain=True, key={"bits": 2048}
    )
    await world.key(domain="from.test", selector="ed", key={"type": "ed25519"})
    own = pem_of(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    public = key_material.imported(own).public
    mq = [{"domain": "mq.test", "selector": f"c{n}", "key": own, "canonicalization": canon}
          for n, canon in enumerate(CANONS)]  # fmt: skip
    for entry in mq:
        world.dns.records[f"{entry['selector']}._domainkey.mq.test"] = f"v=DKIM1; k=rsa; p={public}"
    header = json.dumps([{"domain": "from.test"}, {"domain": "from.test", "selector": "ed"}])
    mime = message(f"From: Ann <ann@from.test>\r\nX-GreenArrow-DKIM: {header}\r\n").decode()
    response = await world.api.post(
        "/v1/inject", json={"recipient": "rcpt@dest.test", "mime": mime, "dkim": mq}
    )
    assert response.status_code == 200, response.text
    (seen,) = await world.delivered(1)

    zone = DnsZone(local_domains=())
    for name, text in world.dns.records.items():
        zone.options.append(f"--txt-record={name},{text}")
    dnsmasq.start(zone)
    verdicts = await asyncio.to_thread(opendkim_verdicts, seen.data, dnsmasq, tmp_path)
    expected = {"default", "ed", "c0", "c1", "c2", "c3"}
    assert verdicts == dict.fromkeys(expected, "pass"), verdicts
    tampered = seen.data.replace(b"trailing", b"Trailing")
    verdicts = await asyncio.to_thread(opendkim_verdicts, tampered, dnsmasq, tmp_path)
    assert set(verdicts) == expected and "pass" not in verdicts.values(), verdicts
