"""A big `wqbot sync --full` at the default log level writes a handful of lines, not one per WeCom
call: httpx's request lines stay below WARNING unless WQBOT_LOG_LEVEL=DEBUG, and the plain
progress (stderr is not a terminal here) is a line per stage and at most two a minute.

The run reads 2,000 members in list_id mode: one user/get per member, the mode in which every
call used to be an INFO line (19,772 lines for 20,000 members). What is left does not grow with
the directory: the same stage lines and the run's closing records at any size, so 2,000 members
stand for 20,000 (the 20,000-member run, bench-sized at about two minutes here, wrote 8 lines in
list mode). The DEBUG run afterwards shows the test can fail: there, every call is a line."""

from __future__ import annotations

import json
import subprocess
import sys

from sim import SimConfig, create_app
from sim.server import ServerThread
from tests.ops.support import clean_env, sim_values

MEMBERS = 2000


def run(folder, env, *args):
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "sync", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_full_sync_of_thousands_writes_fewer_than_50_log_lines(tmp_path):
    folder = tmp_path
    cfg = SimConfig(users=MEMBERS, departments=200, seed=7, contacts_new_ip=True)
    with ServerThread(create_app(cfg)) as url:
        env = clean_env(
            **sim_values(cfg, url),
            SECRET_KEY="k" * 32,
            WEIQIAN_API_TOKEN="t" * 32,
            DATABASE_URL=f"sqlite:///{folder}/wqbot.db",
            QUEUE_URL=f"sqlite:///{folder}/queue.db",
        )
        r = run(folder, env, "--full")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{MEMBERS} seen: {MEMBERS} created" in r.stdout and "(list_id mode, full)" in r.stdout
        calls = r.stdout.split("API calls ")[1]
        assert int(calls.split()[0]) > MEMBERS  # a call per member, at least
        lines = r.stderr.splitlines()
        assert len(lines) < 50, r.stderr
        assert not any("HTTP Request" in x or '"logger": "httpx"' in x for x in lines), r.stderr
        finished = [json.loads(x) for x in lines if x.startswith("{") and "directory sync finished" in x]
        assert finished and finished[0]["users_created"] == MEMBERS

        debug = run(folder, {**env, "WQBOT_LOG_LEVEL": "DEBUG"})  # incremental: a slice of user/get calls
        assert debug.returncode == 0, debug.stderr
        made = int(debug.stdout.split("API calls ")[1].split()[0])
        httpx_lines = [x for x in debug.stderr.splitlines() if '"logger": "httpx"' in x]
        assert made >= 3 and len(httpx_lines) >= made  # at DEBUG every call is a line
