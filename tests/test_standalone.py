"""The repository stands on its own: nothing in a tracked file points at material outside it.

A clone from a public host has only the repo, so code, messages, tests and docs cite `docs/…`
(or say the fact plainly), never a workspace file, a team tracker's issue number, or a path on
someone's machine. CHANGELOG.md may name issues.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"CHANGELOG.md", "tests/test_standalone.py"}

# (what it is, the pattern): built from pieces so this file's own source does not match them.
FORBIDDEN = [
    ("a path to a workspace folder beside the repo", re.compile(r"\.\./" + "shared")),
    ("a workspace file", re.compile(r"shared/(spec|wecom)/")),
    ("the workspace's interface contract", re.compile("CONTRA" + "CT")),
    ("the workspace's WeCom protocol notes", re.compile(r"PROTO" + r"COL(\.md| ?§)")),
    ("an issue number", re.compile(r"\b[Ii]ssues?\s*#?\s*\d+")),
    ("a machine-specific path", re.compile(r"/work/(main|wt|shared)\b")),
]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def test_no_tracked_file_points_outside_the_repository():
    found = []
    for rel in tracked_files():
        if rel in ALLOWED:
            continue
        try:
            text = (ROOT / rel).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary, or deleted in the working tree
        for n, line in enumerate(text.splitlines(), 1):
            for what, pattern in FORBIDDEN:
                if pattern.search(line):
                    found.append(f"{rel}:{n}: {what}: {line.strip()[:120]}")
    assert not found, "cite docs/… instead (or say it plainly):\n" + "\n".join(found)


def test_every_docs_file_the_repository_cites_exists():
    """Every page of docs/ named anywhere (code comments, messages, docs) exists."""
    cited: dict[str, str] = {}
    for rel in tracked_files():
        try:
            text = (ROOT / rel).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        for m in re.finditer(r"\bdocs/([A-Za-z0-9_-]+\.md)", text):
            cited.setdefault(m.group(1), rel)
    missing = sorted(
        f"docs/{name} (cited in {where})" for name, where in cited.items() if not (ROOT / "docs" / name).is_file()
    )
    assert not missing, "cited but missing: " + ", ".join(missing)


def test_every_docs_section_the_code_cites_exists():
    """A citation such as (docs/wecom.md, "Menus") names a heading of that page."""
    bad = []
    for rel in tracked_files():
        if not rel.endswith((".py", ".toml", ".md", ".java")):
            continue
        text = (ROOT / rel).read_text(encoding="utf-8")
        for m in re.finditer(r'docs/([A-Za-z0-9_-]+\.md),? "([^"]+)"', text):
            page = ROOT / "docs" / m.group(1)
            if not page.is_file():
                continue  # reported by the test above
            headings = {h.strip() for h in re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)}
            if m.group(2) not in headings:
                bad.append(f'{rel}: docs/{m.group(1)} has no section "{m.group(2)}"')
    assert not bad, "\n".join(sorted(set(bad)))
