"""Routing rules choose a VirtualMTA per recipient (contract §2.7): overrides by the most
specific pattern, weights, and the three randomization types."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from vmta.domain.config.virtual_mta import (
    DeliverThrough,
    Distribution,
    DomainOverride,
    IpAddress,
    Limits,
    RandomizationType,
    Ref,
    RelayServer,
    RoutingRule,
    VirtualMta,
)
from vmta.domain.paths.routing_choice import (
    RoutingUnresolved,
    address_constant_entry,
    choose,
    resolve_nested,
    select_distribution,
)

A = Ref(id=11, name="ip-a")
B = Ref(id=12, name="ip-b")
C = Ref(id=13, name="ip-c")
SAMPLES = 4000


def distribution(kind: RandomizationType, *weighted: tuple[Ref, float]) -> Distribution:
    return Distribution(kind, [DeliverThrough(ref, weight) for ref, weight in weighted])


def rule(kind: RandomizationType, *weighted: tuple[Ref, float], rule_id: int = 7) -> RoutingRule:
    return RoutingRule(name="split", default=distribution(kind, *weighted), id=rule_id)


def share_of(chosen: list[Ref], ref: Ref) -> float:
    return Counter(chosen)[ref] / len(chosen)


# ---- weights: 1 and 3 split 25/75 within 2 points, for every randomization type -----------


def test_random_splits_by_weight() -> None:
    split = rule(RandomizationType.RANDOM, (A, 1), (B, 3))
    rng = random.Random(20240501)
    chosen = [choose(split, "u@x.test", rng=rng, memory={}) for _ in range(SAMPLES)]
    assert abs(share_of(chosen, A) - 0.25) <= 0.02
    assert abs(share_of(chosen, B) - 0.75) <= 0.02


def test_random_draws_again_for_every_attempt_of_one_message() -> None:
    split = rule(RandomizationType.RANDOM, (A, 1), (B, 1))
    rng = random.Random(3)
    memory: dict[str, Any] = {}
    chosen = {choose(split, "u@x.test", rng=rng, memory=memory) for _ in range(50)}
    assert chosen == {A, B}
    assert memory == {}  # random keeps nothing for retries


def test_message_constant_splits_by_weight_across_messages() -> None:
    split = rule(RandomizationType.MESSAGE_CONSTANT, (A, 1), (B, 3))
    rng = random.Random(99)
    chosen = [choose(split, "u@x.test", rng=rng, memory={}) for _ in range(SAMPLES)]
    assert abs(share_of(chosen, A) - 0.25) <= 0.02


def test_address_constant_splits_by_weight_across_addresses() -> None:
    split = rule(RandomizationType.EMAIL_ADDRESS_CONSTANT, (A, 1), (B, 3))
    rng = random.Random(1)
    chosen = [
        choose(split, f"user{n}@domain{n % 37}.test", rng=rng, memory={}) for n in range(SAMPLES)
    ]
    assert abs(share_of(chosen, A) - 0.25) <= 0.02
    assert abs(share_of(chosen, B) - 0.75) <= 0.02


def test_three_way_address_constant_split_honours_each_weight() -> None:
    entries = [DeliverThrough(A, 20), DeliverThrough(B, 30), DeliverThrough(C, 50)]
    chosen = [address_constant_entry(entries, f"r{n}@x.test").virtual_mta for n in range(SAMPLES)]
    assert abs(share_of(chosen, A) - 0.20) <= 0.02
    assert abs(share_of(chosen, B) - 0.30) <= 0.02
    assert abs(share_of(chosen, C) - 0.50) <= 0.02


# ---- message_constant: one choice per message, kept across retries -------------------------


def test_message_constant_retries_go_through_the_first_choice() -> None:
    """A message deferred three times is retried through the same VirtualMTA; the memory
    goes through JSON between attempts as it does through the spool."""
    split = rule(RandomizationType.MESSAGE_CONSTANT, (A, 1), (B, 1))
    rng = random.Random(5)
    firsts: set[Ref] = set()
    for _message in range(200):
        memory: dict[str, Any] = {}
        first = choose(split, "u@x.test", rng=rng, memory=memory)
        for _retry in range(3):
            memory = json.loads(json.dumps(memory))
            assert choose(split, "u@x.test", rng=rng, memory=memory) == first
        firsts.add(first)
    assert firsts == {A, B}  # the messages did not all go one way


def test_message_constant_chooses_again_when_the_remembered_entry_is_gone() -> None:
    memory: dict[str, Any] = {}
    before = rule(RandomizationType.MESSAGE_CONSTANT, (A, 1), (B, 1e-9))
    assert choose(before, "u@x.test", rng=random.Random(0), memory=memory) == A
    after = rule(RandomizationType.MESSAGE_CONSTANT, (B, 1), (C, 1e-9))
    assert choose(after, "u@x.test", rng=random.Random(0), memory=memory) == B
    assert memory == {"7": {"default": "id:12"}}


def test_message_constant_keeps_a_choice_per_rule_and_per_override() -> None:
    split = RoutingRule(
        name="split",
        id=7,
        default=distribution(RandomizationType.MESSAGE_CONSTANT, (A, 1), (B, 1)),
        domain_overrides=[
            DomainOverride(
                domains=["y.test"],
                id=3,
                distribution=distribution(RandomizationType.MESSAGE_CONSTANT, (C, 1)),
            )
        ],
    )
    other = rule(RandomizationType.MESSAGE_CONSTANT, (A, 1), (B, 1), rule_id=8)
    memory: dict[str, Any] = {}
    first_x = choose(split, "u@x.test", rng=random.Random(1), memory=memory)
    assert choose(split, "v@y.test", rng=random.Random(1), memory=memory) == C
    first_other = choose(other, "u@x.test", rng=random.Random(1), memory=memory)
    assert set(memory) == {"7", "8"}
    assert memory["7"]["override:3"] == "id:13"
    for seed in range(20):  # the y.test choice did not replace the default's
        assert choose(split, "w@x.test", rng=random.Random(seed), memory=memory) == first_x
        assert choose(other, "w@x.test", rng=random.Random(seed), memory=memory) == first_other


# ---- email_address_constant: one path per address ------------------------------------------


def test_address_constant_is_stable_per_address_and_ignores_case() -> None:
    split = rule(RandomizationType.EMAIL_ADDRESS_CONSTANT, (A, 1), (B, 1))
    addresses = [f"Person{n}@Example.TEST" for n in range(300)]
    first = [choose(split, a, rng=random.Random(n), memory={}) for n, a in enumerate(addresses)]
    again = [choose(split, a.lower(), rng=random.Random(), memory={}) for a in addresses]
    assert first == again
    assert set(first) == {A, B}


def test_address_constant_is_the_same_in_another_process() -> None:
    """No salted ``hash()``: a fresh interpreter with another hash seed agrees."""
    entries = [DeliverThrough(A, 1), DeliverThrough(B, 3), DeliverThrough(C, 2)]
    addresses = [f"user{n}@x.test" for n in range(200)]
    here = [address_constant_entry(entries, a).virtual_mta.id for a in addresses]
    script = (
        "from vmta.domain.paths.routing_choice import address_constant_entry\n"
        "from vmta.domain.config.virtual_mta import DeliverThrough, Ref\n"
        "e = [DeliverThrough(Ref(id=11), 1), DeliverThrough(Ref(id=12), 3),"
        " DeliverThrough(Ref(id=13), 2)]\n"
        "print(' '.join(str(address_constant_entry(e, f'user{n}@x.test').virtual_mta.id)"
        " for n in range(200)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert [int(x) for x in out.stdout.split()] == here


def test_adding_an_entry_moves_addresses_only_to_the_new_entry() -> None:
    two = [DeliverThrough(A, 1), DeliverThrough(B, 1)]
    three = [*two, DeliverThrough(C, 1)]
    moved = 0
    for n in range(1000):
        address = f"r{n}@x.test"
        before = address_constant_entry(two, address).virtual_mta
        after = address_constant_entry(three, address).virtual_mta
        if after != before:
            assert after == C
            moved += 1
    assert 250 <= moved <= 420  # about a third moved, to C


# ---- which distribution ----------------------------------------------------------------------


def test_most_specific_override_wins_else_default() -> None:
    broad = distribution(RandomizationType.RANDOM, (A, 1))
    narrow = distribution(RandomizationType.RANDOM, (B, 1))
    subs = distribution(RandomizationType.RANDOM, (C, 1))
    split = RoutingRule(
        name="r",
        default=distribution(RandomizationType.RANDOM, (Ref(id=99), 1)),
        domain_overrides=[
            DomainOverride(domains=["[*.]a.test"], distribution=broad, id=1),
            DomainOverride(domains=["other.test", "B.A.test"], distribution=narrow, id=2),
            DomainOverride(domains=["*.deep.a.test"], distribution=subs, id=3),
        ],
    )
    assert select_distribution(split, "a.test").key == "override:1"
    assert select_distribution(split, "c.a.test").distribution is broad
    assert select_distribution(split, "b.a.TEST").distribution is narrow
    assert select_distribution(split, "x.deep.a.test").distribution is subs
    assert select_distribution(split, "deep.a.test").distribution is broad
    assert select_distribution(split, "elsewhere.test").key == "default"
    rng = random.Random(0)
    assert choose(split, "u@B.A.test", rng=rng, memory={}) == B
    assert choose(split, "u@z.elsewhere.test", rng=rng, memory={}) == Ref(id=99)


# ---- nesting -------------------------------------------------------------------------------


def ip(ident: int, name: str, *, redirect: int | None = None, paused: bool = False) -> IpAddress:
    return IpAddress(
        name=name,
        ip="127.0.0.3",
        hostname="mta.example.test",
        id=ident,
        delivery_paused=paused,
        redirect=None if redirect is None else Ref(id=redirect),
    )


def lookup_in(records: list[VirtualMta]) -> Any:
    by_id = {record.id: record for record in records}

    async def lookup(ref: Ref) -> VirtualMta | None:
        return by_id.get(ref.id)

    return lookup


async def test_nested_rules_resolve_to_an_ip_address_through_redirects() -> None:
    inner = RoutingRule(
        name="inner", id=2, default=distribution(RandomizationType.RANDOM, (Ref(id=3), 1))
    )
    outer = RoutingRule(
        name="outer", id=1, default=distribution(RandomizationType.RANDOM, (Ref(id=2), 1))
    )
    relay = RelayServer(
        name="relay",
        source_ip="127.0.0.4",
        source_hostname="r.test",
        destination_hostname="127.0.0.1",
        destination_port=2525,
        username=None,
        password=None,
        throttle_limits=Limits(0, 0),
        id=4,
    )
    records: list[VirtualMta] = [outer, inner, ip(3, "ip-3", redirect=4), relay]
    found = await resolve_nested(
        outer, "u@x.test", lookup_in(records), rng=random.Random(0), memory={}
    )
    assert found.target is relay
    assert found.trail == ("outer", "inner", "ip-3", "relay")


async def test_a_paused_ip_address_ends_the_chain_before_its_redirect() -> None:
    outer = RoutingRule(
        name="outer", id=1, default=distribution(RandomizationType.RANDOM, (Ref(id=3), 1))
    )
    records: list[VirtualMta] = [outer, ip(3, "paused", redirect=5, paused=True), ip(5, "ip-5")]
    found = await resolve_nested(
        outer, "u@x.test", lookup_in(records), rng=random.Random(0), memory={}
    )
    assert found.target.name == "paused"


async def test_a_missing_target_is_a_temporary_routing_error() -> None:
    outer = RoutingRule(
        name="outer", id=1, default=distribution(RandomizationType.RANDOM, (Ref(id=42), 1))
    )
    with pytest.raises(RoutingUnresolved, match="with id 42, which does not exist"):
        await resolve_nested(outer, "u@x.test", lookup_in([outer]), rng=random.Random(), memory={})


async def test_a_loop_is_reported_not_followed() -> None:
    one = RoutingRule(
        name="one", id=1, default=distribution(RandomizationType.RANDOM, (Ref(id=2), 1))
    )
    two = RoutingRule(
        name="two", id=2, default=distribution(RandomizationType.RANDOM, (Ref(id=1), 1))
    )
    with pytest.raises(RoutingUnresolved, match="loops back"):
        await resolve_nested(one, "u@x.test", lookup_in([one, two]), rng=random.Random(), memory={})


async def test_a_chain_longer_than_the_bound_is_refused() -> None:
    chain: list[VirtualMta] = [ip(n, f"ip-{n}", redirect=n + 1) for n in range(1, 10)]
    chain.append(ip(10, "ip-10"))
    lookup = lookup_in(chain)
    found = await resolve_nested(chain[0], "u@x.test", lookup, rng=random.Random(), memory={})
    assert found.target.name == "ip-10"
    with pytest.raises(RoutingUnresolved, match="more than 5"):
        await resolve_nested(
            chain[0], "u@x.test", lookup, rng=random.Random(), memory={}, max_depth=5
        )
