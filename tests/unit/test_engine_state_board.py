"""Adding up the engine states of a serve process and its workers (/api/queue), and
leaving out a worker whose file is stale."""

from __future__ import annotations

import os
from pathlib import Path

from vmta.runtime.engine_state_board import FRESH_FOR, combined, read_workers, reset, write


def test_counts_are_summed_and_paths_put_together() -> None:
    own = {"running": True, "node": "a", "in_memory": 3, "recovered_in_flight": 1, "paths": [1]}
    worker = {"running": True, "node": "b", "in_memory": 4, "recovered_in_flight": 0, "paths": [2]}
    total = combined(own, [worker])
    assert (total["in_memory"], total["recovered_in_flight"]) == (7, 1)
    assert total["paths"] == [1, 2] and total["nodes"] == ["a", "b"]
    assert total["processes"] == 2 and total["running"] is True
    assert own["in_memory"] == 3  # the process's own state is not changed


def test_stale_worker_files_are_left_out(tmp_path: Path) -> None:
    reset(tmp_path)
    write(tmp_path, 1, {"node": "w1", "in_memory": 2})
    write(tmp_path, 2, {"node": "w2", "in_memory": 5})
    stale = tmp_path / "engine-state" / "worker-2.json"
    old = stale.stat().st_mtime - FRESH_FOR - 1
    os.utime(stale, (old, old))
    assert [s["node"] for s in read_workers(tmp_path)] == ["w1"]
