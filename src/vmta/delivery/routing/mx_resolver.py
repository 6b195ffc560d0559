"""Where mail for a domain goes: its MX hosts and their addresses (RFC 5321 §5.1).

``MxResolver.resolve(domain)`` returns a ``Destination``: the mail hosts in the order to
try them, each with its addresses. The rules:

- MX records sorted by preference, lowest first; hosts of equal preference in random
  order, so that load spreads over them (RFC 5321 §5.1).
- No MX records: the domain itself is the single, implicit MX (RFC 5321 §5.1).
- A null MX, a single MX whose target is ``.`` (RFC 7505 §3), means the domain accepts
  no mail: permanent failure. So is a domain that does not exist (NXDOMAIN), and a
  domain none of whose mail hosts has an address.
- SERVFAIL, REFUSED, timeouts and unreachable servers are temporary failures.
- An address literal (``[127.0.0.1]``, ``[IPv6:::1]``, RFC 5321 §4.1.3) is its own host.

Lookups go through dnspython's asyncio resolver (never blocking the event loop) to the
configured servers, and answers, positive and negative, are cached for their TTL on the
injected clock. Concurrent lookups of the same name share one query.

dnspython is imported, and the system's resolver configuration read, at the first lookup,
not when vmta starts: it is about 5 MB in every process, and a node that only relays
through relay servers never resolves an MX (docs/PERFORMANCE.md, "Round 5: memory").
The first lookup pays for it once (80-170 ms on the 2-core test machine, the event loop
waiting). Configured servers are still checked at start; a system configuration that
names no server makes each lookup fail temporarily (DnsUnavailable), where it used to
stop the start.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vmta.domain.clock import Clock
from vmta.domain.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.message
    import dns.resolver

# ---- results and errors --------------------------------------------------------------------


@dataclass(frozen=True)
class MailHost:
    """One host to try: its name (lower case, no trailing dot; for a literal, the literal
    text), MX preference, and addresses, IPv4 first."""

    name: str
    preference: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Destination:
    """The hosts for one domain, in the order to try them. ``implicit``: the domain had no
    MX, so the domain itself is the host. ``literal``: the domain was an address literal."""

    domain: str
    hosts: tuple[MailHost, ...]
    implicit: bool = False
    literal: bool = False

    @property
    def mx_names(self) -> tuple[str, ...]:
        """The MX host names (for ``mx:`` throttle patterns); empty without MX records."""
        if self.implicit or self.literal:
            return ()
        return tuple(host.name for host in self.hosts)

    def addresses(self, version: int | None = None) -> list[str]:
        """Every address in order, each once; only IPv4 (4) or IPv6 (6) when asked."""
        seen: dict[str, None] = {}
        for host in self.hosts:
            for address in host.addresses:
                if version is None or ipaddress.ip_address(address).version == version:
                    seen.setdefault(address, None)
        return list(seen)


class DestinationRejected(PermanentError):
    """The domain cannot receive mail. ``status`` is the RFC 3463 code for a bounce."""

    status = "5.4.4"  # unable to route


class NullMx(DestinationRejected):
    status = "5.1.10"  # RFC 7505 §4.2


class NoSuchDomain(DestinationRejected):
    status = "5.1.2"  # bad destination system address


class DnsUnavailable(TemporaryError):
    """DNS did not give an answer now (SERVFAIL, REFUSED, timeout, unreachable)."""

    status = "4.4.3"  # directory server failure


class InvalidDnsServer(PermanentError):
    """A configured DNS server is not an IP address with an optional port."""


# ---- the resolver ---------------------------------------------------------------------------

Status = Literal["ok", "nodata", "nxdomain"]


@dataclass(frozen=True)
class _Answer:
    status: Status
    values: tuple[str, ...]  # "preference host" for MX (host "." is null), else addresses
    expires: float


class MxResolver:
    """Finds ``Destination`` plans. ``servers``: IP addresses, each optionally with a port
    (``127.0.0.1:5353``, ``[::1]:5353``); ``port`` applies to those without one. With no
    servers, the system's resolver configuration (/etc/resolv.conf) is used."""

    def __init__(
        self,
        servers: Sequence[str] = (),
        *,
        clock: Clock,
        port: int = 53,
        timeout: float = 3.0,
        lifetime: float = 8.0,
        ipv6: bool = True,
        max_hosts: int = 10,
        cache_size: int = 10_000,
        max_ttl: float = 86_400.0,
        negative_ttl: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._configured = tuple(_nameserver(text, port) for text in servers)
        self._port = port
        # Per server try, and for the whole lookup over every server and retry.
        self._timeout = timeout
        self._lifetime = lifetime
        self._dns: dns.asyncresolver.Resolver | None = None  # at the first lookup
        self._clock = clock
        self._ipv6 = ipv6
        self._max_hosts = max_hosts  # bounds the address lookups one domain can cost
        self._cache_size = cache_size
        self._max_ttl = max_ttl
        # RFC 2308 §5: a negative answer is cached for its SOA's minimum; without an SOA
        # (some servers omit it) this is used, and it caps the SOA's value too.
        self._negative_ttl = negative_ttl
        self._rng = rng or random.Random()
        self._cache: dict[tuple[str, str], _Answer] = {}
        self._inflight: dict[tuple[str, str], asyncio.Task[_Answer]] = {}
        self.queries = 0  # queries sent (cache misses), for tests and metrics

    @property
    def servers(self) -> tuple[tuple[str, int], ...]:
        """The servers asked: the configured ones, else the system's."""
        if self._configured:
            return self._configured
        import dns.nameserver

        return tuple(
            (ns.address, ns.port)
            if isinstance(ns, dns.nameserver.Do53Nameserver)
            else (str(ns), self._port)
            for ns in self._resolver().nameservers
        )

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if self._dns is None:
            import dns.asyncresolver
            import dns.nameserver

            resolver = dns.asyncresolver.Resolver(configure=not self._configured)
            if self._configured:
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(host, port) for host, port in self._configured
                ]
            resolver.timeout = self._timeout
            resolver.lifetime = self._lifetime
            self._dns = resolver
        return self._dns

    async def resolve(self, domain: str) -> Destination:
        """The hosts to deliver ``domain``'s mail to, in order (see the module text)."""
        literal = _address_literal(domain)
        if literal is not None:
            return Destination(domain, (MailHost(domain, 0, (literal,)),), literal=True)
        name = _domain_name(domain)
        records = await self._mx_records(name)
        if records is None:
            hosts = await self._hosts([(0, name)])
            if not hosts:
                raise DestinationRejected(f"{name} has no MX record and no address record.")
            return Destination(name, hosts, implicit=True)
        hosts = await self._hosts(records[: self._max_hosts])
        if not hosts:
            shown = ", ".join(host for _, host in records[: self._max_hosts])
            raise DestinationRejected(f"None of the MX hosts of {name} has an address ({shown}).")
        return Destination(name, hosts)

    async def mx_hosts(self, domain: str) -> tuple[str, ...]:
        """The MX host names of ``domain``, most preferred first; empty when it has no MX
        records or is an address literal. Raises as ``resolve`` does for a null MX, a
        domain that does not exist, and DNS failures."""
        if _address_literal(domain) is not None:
            return ()
        records = await self._mx_records(_domain_name(domain))
        return () if records is None else tuple(host for _, host in records)

    # ---- steps ----

    async def _mx_records(self, name: str) -> list[tuple[int, str]] | None:
        """MX records in the order to try them, or None when the domain has none."""
        answer = await self._lookup(name, "MX")
        if answer.status == "nxdomain":
            raise NoSuchDomain(f"{name} does not exist (NXDOMAIN).")
        if answer.status == "nodata":
            return None
        records: list[tuple[int, str]] = []
        for value in answer.values:
            preference, _, host = value.partition(" ")
            records.append((int(preference), host))
        # RFC 7505 §3: a single MX with target "." says the domain accepts no mail. A "."
        # among real hosts (which §3 forbids publishing) is no host to try, so it is skipped.
        usable = [(pref, host) for pref, host in records if host != "."]
        if not usable:
            raise NullMx(f"{name} publishes a null MX (RFC 7505): it accepts no mail.")
        # RFC 5321 §5.1: lowest preference first; equal ones in random order.
        keyed = [(pref, self._rng.random(), host) for pref, host in usable]
        keyed.sort()
        return [(pref, host) for pref, _, host in keyed]

    async def _hosts(self, records: Sequence[tuple[int, str]]) -> tuple[MailHost, ...]:
        """The hosts that have addresses. A host whose lookup failed temporarily is
        skipped; if that leaves none, the failure is temporary (RFC 5321 §5.1)."""
        types = ("A", "AAAA") if self._ipv6 else ("A",)
        lookups = [self._lookup(host, rdtype) for _, host in records for rdtype in types]
        results = await asyncio.gather(*lookups, return_exceptions=True)
        hosts: list[MailHost] = []
        temporary: DnsUnavailable | None = None
        for index, (preference, host) in enumerate(records):
            addresses: list[str] = []
            for result in results[index * len(types) : (index + 1) * len(types)]:
                if isinstance(result, DnsUnavailable):
                    temporary = result
                elif isinstance(result, BaseException):
                    raise result
                elif result.status == "ok":
                    addresses.extend(result.values)
            if addresses:
                hosts.append(MailHost(host, preference, tuple(dict.fromkeys(addresses))))
        if not hosts and temporary is not None:
            raise temporary
        return tuple(hosts)

    async def _lookup(self, name: str, rdtype: str) -> _Answer:
        key = (name, rdtype)
        cached = self._cache.get(key)
        if cached is not None and cached.expires > self._clock.now():
            return cached
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._query(name, rdtype))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        # Shielded: one caller giving up (cancelled) does not cancel the others' query.
        return await asyncio.shield(task)

    def _settle(self, key: tuple[str, str], task: asyncio.Task[_Answer]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if task.cancelled():
            return
        if task.exception() is None:  # also marks a failure as retrieved
            self._remember(key, task.result())

    def _remember(self, key: tuple[str, str], answer: _Answer) -> None:
        if answer.expires <= self._clock.now():
            return  # TTL 0: not to be cached (RFC 1035 §3.2.1)
        if len(self._cache) >= self._cache_size:
            now = self._clock.now()
            for stale in [k for k, v in self._cache.items() if v.expires <= now]:
                del self._cache[stale]
            while len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[key] = answer

    async def _query(self, name: str, rdtype: str) -> _Answer:
        import dns.exception
        import dns.rdatatype
        import dns.resolver

        self.queries += 1
        try:
            answer = await self._resolver().resolve(
                name, rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            return _Answer("nxdomain", (), self._negative_expiry(_first_response(exc)))
        except dns.resolver.YXDOMAIN:
            return _Answer("nxdomain", (), self._negative_expiry(None))
        except dns.resolver.LifetimeTimeout:
            raise DnsUnavailable(f"DNS lookup of {rdtype} for {name} timed out.") from None
        except dns.resolver.NoNameservers:
            raise DnsUnavailable(
                f"DNS lookup of {rdtype} for {name} failed: no server answered"
                " (SERVFAIL, REFUSED or unreachable)."
            ) from None
        except dns.exception.DNSException as exc:
            raise DnsUnavailable(f"DNS lookup of {rdtype} for {name} failed: {exc}") from None
        if answer.rrset is None:
            return _Answer("nodata", (), self._negative_expiry(answer.response))
        ttl = min(float(answer.chaining_result.minimum_ttl), self._max_ttl)
        values: list[str] = []
        for rdata in answer.rrset:
            if rdata.rdtype == dns.rdatatype.MX:
                exchange = rdata.exchange.to_text(omit_final_dot=True).lower()
                values.append(f"{rdata.preference} {exchange}")
            else:
                values.append(str(rdata.address))
        return _Answer("ok", tuple(values), self._clock.now() + ttl)

    def _negative_expiry(self, response: dns.message.Message | None) -> float:
        import dns.rdatatype

        ttl = self._negative_ttl
        for rrset in response.authority if response is not None else []:
            if rrset.rdtype == dns.rdatatype.SOA:
                # RFC 2308 §5: the lesser of the SOA record's TTL and its MINIMUM field.
                ttl = min(ttl, float(rrset.ttl), *(float(soa.minimum) for soa in rrset))
        return self._clock.now() + ttl


# ---- names -----------------------------------------------------------------------------------


def _address_literal(domain: str) -> str | None:
    """The address of ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3), None
    for a domain name; a bracketed text that is no address is refused."""
    text = domain.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    inner = text[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return str(ipaddress.IPv6Address(inner[5:]))
        return str(ipaddress.IPv4Address(inner))
    except ValueError:
        raise DestinationRejected(
            f"{text} is not an address literal ([192.0.2.1] or [IPv6:2001:db8::1],"
            " RFC 5321 §4.1.3)."
        ) from None


def _domain_name(domain: str) -> str:
    """The domain in lower case without the final dot, checked to be a DNS name."""
    import dns.exception
    import dns.name

    text = domain.strip().lower().rstrip(".")
    try:
        if not text:
            raise dns.name.EmptyLabel
        dns.name.from_text(text)
    except dns.exception.DNSException:
        raise DestinationRejected(f"{domain!r} is not a valid domain name.") from None
    return text


def _first_response(exc: dns.resolver.NXDOMAIN) -> dns.message.Message | None:
    import dns.message

    responses = exc.kwargs.get("responses") or {}
    for response in responses.values():
        if isinstance(response, dns.message.Message):
            return response
    return None


def _nameserver(text: str, default_port: int) -> tuple[str, int]:
    """``192.0.2.53``, ``2001:db8::53``, ``192.0.2.53:5353`` or ``[2001:db8::53]:5353``."""
    entry = text.strip()
    host, port = entry, str(default_port)
    if entry.startswith("["):
        host, closing, rest = entry[1:].partition("]")
        if not closing or not rest.startswith(":"):
            host = ""  # "[...]" is only for a port to follow
        port = rest[1:]
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not port.isdigit() or not 0 < number < 65536:
            raise ValueError(port)
    except ValueError:
        raise InvalidDnsServer(
            f"DNS server {text!r} must be an IP address, optionally with a port from 1 to"
            " 65535 (192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:5353)."
        ) from None
    return host, number
