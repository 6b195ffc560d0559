"""Secret hashes: SHA-256 for generated secrets, salted scrypt for chosen ones."""

from __future__ import annotations

from vmta.domain.config.credential import (
    hash_chosen_secret,
    hash_secret,
    is_slow_hash,
    new_secret,
    secret_matches,
)


def test_generated_secret_keeps_a_fast_hash() -> None:
    secret = new_secret()
    stored = hash_secret(secret)
    assert not is_slow_hash(stored)
    assert secret_matches(secret, stored) and not secret_matches(secret + "x", stored)


def test_chosen_secret_is_salted() -> None:
    first, second = hash_chosen_secret("hunter2-hunter2"), hash_chosen_secret("hunter2-hunter2")
    assert first != second  # a fresh salt each time
    assert first.startswith("scrypt$16384$8$1$")
    assert secret_matches("hunter2-hunter2", first) and secret_matches("hunter2-hunter2", second)
    assert not secret_matches("hunter2-hunter3", first)
    assert hash_secret("hunter2-hunter2") not in first


def test_damaged_or_greedy_hash_never_matches() -> None:
    good = hash_chosen_secret("s3cret-s3cret")
    assert not secret_matches("s3cret-s3cret", good.replace("$16384$", "$x$"))
    assert not secret_matches("s3cret-s3cret", good.replace("$16384$", f"${2**30}$"))
