"""deploy/ holds the real files docs/deploy.md installs: the systemd units pass `systemd-analyze
verify` (where systemd is installed), and the doc points at them instead of carrying copies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ANALYZE = shutil.which("systemd-analyze")


def test_the_doc_links_every_deploy_file_and_copies_none():
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert {p.name for p in UNITS} >= {"wqbot-web@.service", "wqbot-worker@.service", "wqbot.service"}
    for p in files:
        assert f"../{p.relative_to(ROOT)}" in doc, f"docs/deploy.md does not link {p.relative_to(ROOT)}"
    assert "```nginx" not in doc and "```ini" not in doc  # the files themselves, not copies
    assert not re.search(r"^ExecStart=", doc, re.M)


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (not a systemd host)")
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verifies_the_unit(unit, tmp_path):
    """The unit as shipped, with only the install path of the venv swapped for this test's (verify
    checks that ExecStart's program exists). A template is verified as one of its instances."""
    text = unit.read_text(encoding="utf-8")
    assert "/srv/wqbot/venv/bin/wqbot" in text
    wqbot = Path(sys.executable).with_name("wqbot")
    text = text.replace("/srv/wqbot/venv/bin/wqbot", str(wqbot if wqbot.exists() else shutil.which("true")))
    name = unit.name.replace("@.service", "@8000.service")
    (tmp_path / name).write_text(text, encoding="utf-8")
    r = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(tmp_path / name)], capture_output=True, text=True, timeout=60
    )
    problems = [x for x in r.stderr.splitlines() if str(tmp_path) in x or name in x]
    assert r.returncode == 0 and not problems, r.stderr
