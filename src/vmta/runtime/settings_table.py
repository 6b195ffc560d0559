"""README's configuration table, made from ``OPTIONS`` and the defaults of ``Settings``:
``python -m vmta.runtime.settings_table`` prints it, ``--write README.md`` puts it in
place of the table there, and tests/unit/test_setting_defaults.py fails when README's
table is not the one this makes."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from vmta.runtime.settings import OPTIONS, help_text

HEADER = (
    "| setting (TOML key) | environment | flag | meaning |",
    "|---|---|---|---|",
)
_DOC = re.compile(r"\bdocs/[\w-]+\.md(?:#[\w-]+)?")


def rows() -> list[str]:
    lines = list(HEADER)
    for option in OPTIONS:
        # A docs/ page named in the help is a link on GitHub.
        meaning = _DOC.sub(lambda m: f"[{m[0]}]({m[0]})", help_text(option))
        flag = f"`{option.flag}`" if option.flag else "—"
        lines.append(f"| `{option.name}` | `{option.env}` | {flag} | {meaning} |")
    return lines


def replaced(markdown: str) -> str:
    """``markdown`` with its configuration table (from the header to the first line that
    is not a row) replaced by the one made here."""
    lines = markdown.split("\n")
    start = lines.index(HEADER[0])
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join([*lines[:start], *rows(), *lines[end:]])


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(replaced(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    if argv:
        print("usage: python -m vmta.runtime.settings_table [--write README.md]")
        return 2
    print("\n".join(rows()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
