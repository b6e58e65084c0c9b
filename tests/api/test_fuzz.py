"""schemathesis against a live wqbot: `wqbot serve` + `wqbot sim` (+ `wqbot worker` on the
scale-out backend), fuzzed through /api/v1/openapi.json with every check schemathesis has: no 5xx,
no response that disagrees with the document, valid requests accepted, invalid ones refused,
the bearer enforced, created notifications readable.

Bounded for CI: WQBOT_FUZZ_EXAMPLES cases per operation and phase (default 40) from a fixed
seed (WQBOT_FUZZ_SEED, default 1515), so a run is repeatable; set either to explore further.
On failure the assertion shows schemathesis's report with a curl line for each finding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.live import LiveWqbot
from tests.api.test_hostile_input import DEEP, DEEP_OBJECT, GETS, JSON_ENDPOINTS

pytestmark = pytest.mark.external

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("WQBOT_FUZZ_EXAMPLES", "40"))
SEED = int(os.environ.get("WQBOT_FUZZ_SEED", "1515"))


def test_schemathesis_finds_nothing(tmp_path):
    with LiveWqbot(tmp_path) as live:
        live.sync()  # a directory to page through and a change feed to read
        assert httpx.get(live.url + "/api/v1/org/users", headers=live.auth).json()["users"]
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(CONFIG),
                "run",
                f"{live.url}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {live.api_token}",
                "--checks",
                "all",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                str(SEED),
                "--workers",
                "1",
                "--request-timeout",
                "30",
            ],
            cwd=tmp_path,
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
            capture_output=True,
            text=True,
            timeout=900,
        )
        report = r.stdout[-12000:] + r.stderr[-3000:]
        assert r.returncode == 0, f"schemathesis found problems (exit {r.returncode}):\n{report}"
        assert "Tested: 7" in r.stdout, report  # every operation of the document was exercised
        for name in live.procs:
            assert "Traceback" not in live.log(name, 1_000_000), f"{name} logged a traceback:\n{live.log(name)}"


def test_the_hostile_inputs_get_400_from_the_live_server(tmp_path):
    """The hand-made hostile inputs (tests/api/test_hostile_input.py) against a real `wqbot serve`:
    each a 400 with a message, and no traceback in its log."""
    with LiveWqbot(tmp_path) as live:
        with httpx.Client(base_url=live.url, headers=live.auth, timeout=30) as c:
            for name, path in GETS.items():
                r = c.get(path)
                assert r.status_code == 400 and r.json()["message"], (name, r.status_code, r.text[:300])
            posts = [(p, b) for p in JSON_ENDPOINTS for b in (DEEP, DEEP_OBJECT)]
            posts += [
                ("/api/v1/tickets/validate", '{"ticket": "abc\\ud800def"}'),
                ("/api/v1/notifications", '{"id": "x", "type": "notice", "title": "\\udfff", "recipients": ["a"]}'),
            ]
            for path, body in posts:
                r = c.post(path, content=body.encode(), headers={"content-type": "application/json"})
                assert r.status_code == 400 and r.json()["message"], (path, body[:40], r.status_code, r.text[:300])
        for name in live.procs:
            assert "Traceback" not in live.log(name, 1_000_000), f"{name} logged a traceback:\n{live.log(name)}"
