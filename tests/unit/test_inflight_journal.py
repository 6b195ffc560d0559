"""The in-flight journal: what was started and not finished survives a crash, and the file
stays small however long the process runs."""

from __future__ import annotations

from pathlib import Path

from vmta.delivery.engine.inflight_journal import InflightJournal


def test_unfinished_ids_are_recovered(tmp_path: Path) -> None:
    journal = InflightJournal(tmp_path / "j")
    assert journal.recover() == set()
    journal.started([1, 2, 3])
    journal.finished([1, 3])
    journal.started([4])
    # No close: a process killed with -9 never gets to close the file.
    assert InflightJournal(tmp_path / "j").recover() == {2, 4}


def test_compaction_keeps_only_open_ids(tmp_path: Path) -> None:
    journal = InflightJournal(tmp_path / "j", max_bytes=200)
    journal.recover()
    journal.started([7])  # stays open throughout
    for i in range(100, 400):
        journal.started([i])
        journal.finished([i])
    assert (tmp_path / "j").stat().st_size < 400
    journal.started([9])
    assert InflightJournal(tmp_path / "j").recover() == {7, 9}
