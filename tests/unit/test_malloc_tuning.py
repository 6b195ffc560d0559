"""A scrypt check (16 MiB of working memory) leaves nothing resident once glibc's mmap
threshold is fixed (runtime/malloc_tuning.py); without it, its block stays in the heap.
Each case runs in a fresh interpreter: the threshold is per process and cannot be undone."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import sys, threading
from pathlib import Path
from vmta.domain.config.credential import hash_chosen_secret
from vmta.runtime.malloc_tuning import tune_malloc

def resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")

fixed = tune_malloc() if sys.argv[1] == "fixed" else False
before = resident_kib()
hash_chosen_secret("an operator's secret")  # as vmta serve does at start (VMTA_API_TOKEN)
thread = threading.Thread(target=hash_chosen_secret, args=("a request's secret",))
thread.start()
thread.join()
hash_chosen_secret("another request's secret")
print(fixed, resident_kib() - before)
"""

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)


def _run(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    fixed, grown = done.stdout.split()
    return fixed, int(grown)


def test_with_the_threshold_fixed_scrypt_blocks_go_back_to_the_system() -> None:
    fixed, grown_kib = _run("fixed")
    assert fixed == "True"
    assert grown_kib < 8 * 1024  # not one of its 16 MiB blocks


def test_without_it_a_scrypt_block_stays_resident() -> None:
    # The case the setting exists for: if glibc ever stops keeping the block, this fails
    # and the setting can go.
    fixed, grown_kib = _run("dynamic")
    assert fixed == "False"
    assert grown_kib >= 16 * 1024
