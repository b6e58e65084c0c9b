"""The lease (one run at a time), the periodic task and its schedule, `wqbot sync`."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime

import pytest

from bot.sync.lease import Busy, Lease, LeaseLost
from bot.sync.tasks import due, reconcile
from store import db
from store.directory import SyncRun, User


def test_two_workers_racing_the_periodic_task_one_runs(settings, fake):
    fake.delay = 0.15  # each WeCom call takes a while, so the two runs overlap
    start = threading.Barrier(2)
    results = []

    def worker():
        start.wait()
        try:
            results.append(reconcile.call_local())
        finally:
            db.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results, key=lambda r: r is None)[1] is None
    ran = [r for r in results if r is not None]
    assert len(ran) == 1 and SyncRun.select().count() == 1
    assert SyncRun.get_by_id(ran[0]).status == "ok" and User.select().count() == 5
    assert fake.api_calls() == {"department/list": 1, "user/list": 1}


def test_the_lease_excludes_and_lapses_when_its_holder_dies(store):
    a = Lease(ttl=0.3).acquire()
    with pytest.raises(Busy, match="another directory sync is running"):
        Lease().acquire()
    time.sleep(0.4)  # a never renews: it "crashed"
    b = Lease().acquire()
    with pytest.raises(LeaseLost):
        a.renew(force=True)
    b.release()
    Lease().acquire().release()


def test_the_lease_is_released_after_a_run(settings, fake):
    from bot.sync import run_sync

    run_sync(settings, trigger="periodic")
    run_sync(settings, trigger="periodic")
    assert SyncRun.select().count() == 2


# due() is a pure function of the minute it is given (it reads no clock): the table's instants are
# times of day on one arbitrary, fixed day.
@pytest.mark.parametrize(
    "minutes, at, expected",
    [
        (10, "10:20", True),
        (10, "10:25", False),
        (10, "00:00", True),
        (15, "10:45", True),
        (7, "10:20", None),
        (90, "01:30", None),
    ],
)
def test_the_schedule(settings, monkeypatch, minutes, at, expected):
    import dataclasses

    import settings as settings_mod

    monkeypatch.setattr(settings_mod, "_current", dataclasses.replace(settings, sync_interval_minutes=minutes))
    dt = datetime.combine(date(2026, 1, 1), datetime.strptime(at, "%H:%M").time())
    if expected is not None:
        assert due(dt) is expected
    # any interval: exactly one due minute in every `minutes` consecutive minutes
    base = datetime(2026, 3, 1).timestamp() // 60
    hits = [m for m in range(int(base), int(base) + minutes * 5) if due(datetime.utcfromtimestamp(m * 60))]
    assert len(hits) == 5 and all(b - a == minutes for a, b in zip(hits, hits[1:], strict=False))


def test_the_periodic_task_does_nothing_when_wecom_is_off(settings, fake, monkeypatch):
    import dataclasses

    import settings as settings_mod

    monkeypatch.setattr(settings_mod, "_current", dataclasses.replace(settings, wecom_enabled=False))
    assert reconcile.call_local() is None and fake.api_calls() == {}


# -- wqbot sync ---------------------------------------------------------------------------------------
def cli(*argv):
    from bot.cli import build_parser
    from bot.sync.cli import main

    return main(build_parser().parse_args(["sync", *argv]))


def test_wqbot_sync_prints_progress_and_a_summary(fake, capsys):
    assert cli() == 0
    out, err = capsys.readouterr()
    assert "directory sync #" in out and ": ok in" in out and "5 created" in out
    assert "API calls 2 (department/list 1, user/list 1)" in out
    assert "users" in err  # the progress lines


def test_a_run_that_fails_on_its_first_call_says_what_it_tried_and_what_the_store_holds(fake, capsys):
    assert cli() == 0
    held = User.select().where(User.active).count()
    capsys.readouterr()
    fake.fail.add("department/list")  # the first listing call
    assert cli() == 1
    run = SyncRun.select().order_by(SyncRun.id.desc()).first()
    assert (run.status, run.mode) == ("failed", "list")
    out = capsys.readouterr().out
    assert "(list mode" in out and "0 seen" not in out
    assert f"not read; the store keeps its {User.select().count()} members ({held} active) unchanged" in out
    assert "could not be read with WECOM_CONTACTS_SECRET" in out


def test_wqbot_sync_force_needs_full(fake, capsys):
    assert cli("--force") == 2
    assert "--force only goes with --full" in capsys.readouterr().err


def test_wqbot_sync_says_why_disables_were_held_and_exits_3(fake, capsys):
    cli()
    for uid in ("u000", "u001", "u002"):
        del fake.users[uid]
    assert cli() == 3
    out = capsys.readouterr().out
    assert "held back    3 disables" in out and "wqbot sync --full --force" in out
    assert cli("--full", "--force") == 0
    assert "3 disabled" in capsys.readouterr().out


def test_wqbot_sync_when_another_run_holds_the_lease(fake, capsys):
    lease = Lease().acquire()
    try:
        assert cli() == 1
        assert "another directory sync is running" in capsys.readouterr().err
    finally:
        lease.release()


def test_progress_bar_on_a_terminal_and_log_records_above_it():
    """On a terminal the bar is tqdm's; a record logged meanwhile is written on a line of its own
    above the bar, never into it. Off a terminal: plain lines."""
    import io
    import logging

    from bot.observability import logs
    from bot.sync.cli import Progress

    class TTY(io.StringIO):
        def isatty(self):
            return True

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    s = TTY()
    logs.setup(fmt="text", stream=s)
    try:
        p = Progress(s)
        p("users", 10, None)
        p("writing", 50, 100)
        logging.getLogger("wqbot.sync").warning("a warning during the sync")
        logs.flush()
        p("writing", 100, 100)
        p.close()
        logging.getLogger("wqbot.sync").warning("after the bar")
        logs.flush()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logs._filter = None
    text = s.getvalue()
    assert "\r" in text and "100/100" in text and "100%" in text
    lines = text.replace("\r", "\n").splitlines()
    warning = next(x for x in lines if "a warning during the sync" in x)
    assert warning.startswith(tuple("0123456789")) and "%|" not in warning and "writing" not in warning
    assert text.rstrip("\n").endswith("after the bar")

    plain = io.StringIO()
    p = Progress(plain)
    p("users", 10, None)
    p("writing", 100, 100)
    p.close()
    assert plain.getvalue().count("\n") == 2 and "\r" not in plain.getvalue()


def test_embedded_the_sync_rests_in_proportion_to_its_cpu(settings, fake, monkeypatch):
    """Embedded (SQLite), the sync shares its process with the callbacks: after each listing page
    and each write chunk it sleeps EMBEDDED_REST × the CPU that took. Scaled out, it never rests."""
    from bot.sync import reconcile as rc
    from store.db import is_postgres

    slept, cpu = [], iter(range(0, 10_000, 2))  # every thread_time() reading is 2 s of CPU later
    monkeypatch.setattr(rc.time, "thread_time", lambda: float(next(cpu)))
    monkeypatch.setattr(rc.time, "sleep", slept.append)
    fake.standard(n_users=1200)  # 3 write chunks of ≤ 500
    rc.run_sync(settings, trigger="cli")
    assert User.select().count() >= 1200
    if is_postgres():
        assert slept == []
    else:  # one listing page and 3 user chunks (+ the department chunk), each 2 s of "CPU"
        assert len(slept) >= 4 and set(slept) == {rc.EMBEDDED_REST * 2}
