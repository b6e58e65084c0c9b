"""docs/configuration.md lists exactly the settings settings.py reads: the names come from the
`Settings` dataclass itself (each field's "env" metadata), the page's names from the first column
of its tables. A new setting without a line on that page, or a line for a setting that is gone,
fails here and says which."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import settings as settings_mod

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def settings_read() -> set[str]:
    return {f.metadata["env"] for f in fields(settings_mod.Settings)}


def settings_documented() -> list[str]:
    """The first cell of every table row that names a setting: | `NAME` | or | `NAME` 🔒 |."""
    return re.findall(r"^\| `([A-Z][A-Z0-9_]*)`", PAGE.read_text(encoding="utf-8"), flags=re.M)


def test_the_page_lists_exactly_the_settings_settings_py_reads():
    read, documented = settings_read(), settings_documented()
    missing = sorted(read - set(documented))
    extra = sorted(set(documented) - read)
    twice = sorted({n for n in documented if documented.count(n) > 1})
    problems = []
    if missing:
        problems.append("settings.py reads these, docs/configuration.md lacks a row: " + ", ".join(missing))
    if extra:
        problems.append("docs/configuration.md has rows settings.py does not read: " + ", ".join(extra))
    if twice:
        problems.append("docs/configuration.md lists these more than once: " + ", ".join(twice))
    assert not problems, "\n".join(problems)


def test_each_row_gives_the_default_settings_py_uses():
    """The default column says `required` exactly for the settings without a default, and
    quotes the default of the others (empty ones say "empty")."""
    rows = {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^\| `([A-Z][A-Z0-9_]*)`(?: 🔒)? \| ([^|]*) \|", PAGE.read_text(encoding="utf-8"), re.M)
    }
    wrong = []
    for f in fields(settings_mod.Settings):
        name, default = f.metadata["env"], f.metadata["default"]
        cell = rows.get(name)
        if cell is None:
            continue  # reported by the test above
        if default is None:
            ok = cell == "required"
        elif default == "":
            ok = cell.startswith("empty")
        else:
            ok = cell == f"`{default}`"
        if not ok:
            wrong.append(f"{name}: the page says {cell!r}, settings.py's default is {default!r}")
    assert not wrong, "\n".join(wrong)


def test_secrets_are_marked():
    text = PAGE.read_text(encoding="utf-8")
    unmarked = [n for n in sorted(settings_mod._SECRET) if f"| `{n}` 🔒 |" not in text]
    assert not unmarked, "secret settings without 🔒 in docs/configuration.md: " + ", ".join(unmarked)
