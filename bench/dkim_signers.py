"""Which DKIM signer should vmta use? dkimpy's (the reference implementation) against
vmta's own (``vmta.signing.signer``, RSA and Ed25519 in OpenSSL through ``cryptography``).

    .venv/bin/python bench/dkim_signers.py [--seconds S]

Method, printed with the figures:

1. One 2048-bit RSA key and one Ed25519 key, generated once; messages of 1, 10 and 100 KB
   (headers of a typical bulk message, a body of 76-character lines).
2. Each signer signs the same message with the same key, relaxed/relaxed, the same header
   list, in a loop in this one process (single thread), for ``--seconds`` per cell after
   a warm-up of 20 signatures; the figure is the mean CPU time (process_time) per
   signature, and signatures per second of one core.
3. Before timing, each signer's output is verified by dkimpy against the public key, so
   that a broken signer cannot win.
"""

from __future__ import annotations

import argparse
import base64
import platform
import time
from collections.abc import Callable
from importlib import metadata

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from vmta.domain.message.dkim_request import SIGNED_HEADERS
from vmta.signing.keys import material
from vmta.signing.signer import Signature, sign

HEAD = (
    "From: News <news@example.com>\r\nTo: someone@example.net\r\nSubject: The weekly letter\r\n"
    "Date: Mon, 07 Dec 2026 03:00:00 +0000\r\nMessage-ID: <abc.123@example.com>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "List-Unsubscribe: <mailto:unsub@example.com>\r\n\r\n"
)


def message(kilobytes: int) -> bytes:
    line = ("lorem ipsum dolor sit amet " * 3)[:74] + "\r\n"
    body = line * (kilobytes * 1024 // len(line) + 1)
    return (HEAD + body).encode()


def dkimpy_signer(key_pem: bytes, selector: bytes) -> Callable[[bytes], bytes]:
    headers = [h.encode() for h in SIGNED_HEADERS]
    algorithm = b"ed25519-sha256" if selector == b"ed" else b"rsa-sha256"

    def run(data: bytes) -> bytes:
        field = dkim.sign(
            data,
            selector,
            b"example.com",
            key_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=headers,
            signature_algorithm=algorithm,
        )
        return field + data

    return run


def vmta_signer(
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, selector: str
) -> Callable[[bytes], bytes]:
    wanted = [Signature("example.com", selector, key)]

    def run(data: bytes) -> bytes:
        return sign(data, wanted, int(time.time()))

    return run


def timed(run: Callable[[bytes], bytes], data: bytes, seconds: float) -> tuple[float, int]:
    for _ in range(20):
        run(data)
    count = 0
    start = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run(data)
        count += 1
    return (time.process_time() - start) / count, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    records = {}
    pems = {}
    for name, key in (("rsa", rsa_key), ("ed", ed_key)):
        info = material(key)
        records[f"{name}._domainkey.example.com"] = f"v=DKIM1; k={info.type}; p={info.public}"
        pems[name] = info.private_pem.encode()
        if name == "rsa":  # dkimpy reads PKCS#1 for RSA
            pems[name] = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        else:  # and the raw base64 private key for Ed25519 (RFC 8463)
            pems[name] = base64.b64encode(
                key.private_bytes(
                    serialization.Encoding.Raw,
                    serialization.PrivateFormat.Raw,
                    serialization.NoEncryption(),
                )
            )

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return records[name.decode().rstrip(".")].encode()

    print(
        f"# DKIM signers, {platform.python_implementation()} {platform.python_version()},"
        f" dkimpy {metadata.version('dkimpy')}, cryptography {metadata.version('cryptography')},"
        f" {args.seconds:.1f} s per cell"
    )
    print("signer   key      size    CPU ms/sig   sigs/s (1 core)")
    for key_name, key in (("rsa", rsa_key), ("ed", ed_key)):
        signers = {
            "dkimpy": dkimpy_signer(pems[key_name], key_name.encode()),
            "vmta": vmta_signer(key, key_name),
        }
        for size in (1, 10, 100):
            data = message(size)
            for signer_name, run in signers.items():
                signed = run(data)
                assert dkim.verify(signed, dnsfunc=dns), (signer_name, key_name, size)
                per, count = timed(run, data, args.seconds)
                label = "rsa2048" if key_name == "rsa" else "ed25519"
                print(
                    f"{signer_name:8} {label:8} {size:>4} KB {per * 1000:10.3f} {1 / per:12.0f}"
                    f"   ({count} signatures)"
                )


if __name__ == "__main__":
    main()
