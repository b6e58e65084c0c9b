"""Helpers for the "WeCom misbehaves" reliability tests (docs/reliability.md §2): the emulator and wqbot on
loopback ports, a fault mix, answers lost after WeCom acted, a spy on what wqbot heard back,
a queue drain that honours huey's retries, and the comparisons the tests assert.

The emulator's own faults (POST /sim/faults) all fire *before* the API acts: errcode -1, HTTP
500, a held request (timeout), 45009 and 42001 (which really expires the token). `LostAnswers`
adds the other kind: WeCom did the work and the answer never came back (a timeout after the
fact), which is what makes a message/send outcome unknown.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
from collections import Counter, defaultdict

import anyio
import httpx

from sim.limits import api_name

SCALE = os.environ.get("WQBOT_RELIABILITY_SCALE", "short")
LONG = SCALE == "long"

FAULT_SHARE = 0.20  # of every call to WeCom
EXPIRED_SHARE = 0.04  # of every call but gettoken: the 42001 part of the mix (counted on its own)
HOLD_SECONDS = 2.0  # a "timeout" fault holds the request this long…
CLIENT_TIMEOUT = httpx.Timeout(0.8)  # …and wqbot's client gives up well before
# Every API wqbot calls here; the mix is added per prefix so that gettoken (which has no token
# to expire) gets the mix without 42001.
API_PREFIXES = ("department/*", "user/*", "message/*")


def sim_config(wqbot_url: str, **kw):
    """The emulated corp, with the credentials the test settings carry (tests/conftest.py)."""
    from sim import SimConfig
    from tests.conftest import TEST_ENV

    base = dict(
        corp_id=TEST_ENV["WECOM_CORP_ID"],
        agent_id=int(TEST_ENV["WECOM_AGENT_ID"]),
        app_secret=TEST_ENV["WECOM_APP_SECRET"],
        contacts_secret=TEST_ENV["WECOM_CONTACTS_SECRET"],
        token=TEST_ENV["WECOM_TOKEN"],
        aes_key=TEST_ENV["WECOM_AES_KEY"],
        callback_url=f"{wqbot_url}/wecom/callback",
        callback_retries=0,
        callback_timeout=10.0,
        redirect_domain=wqbot_url.split("//")[1],
        users=120,
        departments=12,
        seed=10,
        # WeCom's own quotas are left out: their 45009 comes from the fault mix, and with
        # time compressed (see World) a quota window would just fill up
        quota_per_minute=0,
        quota_per_hour=0,
    )
    base.update(kw)
    return SimConfig(**base)


# -- faults --------------------------------------------------------------------------------------------
def fault_mix(
    share: float = FAULT_SHARE, expired: float = EXPIRED_SHARE, hold: float = HOLD_SECONDS, seed: int = 20
) -> list[dict]:
    """Fault specs giving `share` of all calls a failure: -1, HTTP 500, a timeout, 45009 and an
    expired token, as evenly as the rules allow. The 42001 rules come first and alone so their
    `fired` counters are exactly the forced refreshes."""
    others = [{"errcode": -1}, {"kind": "http500"}, {"kind": "timeout", "hold_seconds": hold}, {"errcode": 45009}]
    rest = (share - expired) / (1 - expired)  # the mix rule only rolls when the 42001 rule did not fire
    specs = [{"path": p, "errcode": 42001, "ratio": expired, "seed": seed} for p in API_PREFIXES]
    specs += [{"path": p, "ratio": rest, "choices": others} for p in API_PREFIXES]
    specs.append({"path": "gettoken", "ratio": share, "choices": others})
    return specs


def add_faults(ctl: httpx.Client, specs: list[dict]) -> list[dict]:
    r = ctl.post("/sim/faults", json={"faults": specs})
    assert r.status_code == 201, r.text
    return r.json()["faults"]


def fired(ctl: httpx.Client) -> dict:
    """{"expired": 42001 faults fired, "other": every other fault fired, "gettoken": faults on gettoken}."""
    out = Counter()
    for f in ctl.get("/sim/faults").json()["faults"]:
        if f["errcode"] == 42001:
            out["expired"] += f["fired"]
        else:
            out["other"] += f["fired"]
        if f["path"] == "gettoken":
            out["gettoken"] += f["fired"]
    return dict(out)


class LostAnswers:
    """ASGI wrapper around the emulator: the `at`-th call to each of `apis`, and every `every`-th
    after it (0: only that one), is handed to the emulator (WeCom acts on it), then the answer is
    held for `hold` seconds and replaced by a 504, so the caller times out not knowing it went
    through."""

    def __init__(
        self,
        app,
        apis=("message/send", "message/update_template_card"),
        at: int = 2,
        every: int = 4,
        hold: float = HOLD_SECONDS,
    ):
        self.app, self.apis, self.at, self.every, self.hold = app, tuple(apis), at, every, hold
        self.state = app.state
        self.seen: Counter = Counter()
        self.lost: Counter = Counter()  # answers withheld for calls the emulator applied (errcode 0)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/cgi-bin/"):
            return await self.app(scope, receive, send)
        api = api_name(scope["path"])
        if api not in self.apis:
            return await self.app(scope, receive, send)
        self.seen[api] += 1
        n = self.seen[api] - self.at
        if n < 0 or (n % self.every if self.every else n):
            return await self.app(scope, receive, send)
        answer = {"body": b""}

        async def withhold(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")

        await self.app(scope, receive, withhold)
        try:
            applied = answer.get("status") == 200 and json.loads(answer["body"]).get("errcode") == 0
        except ValueError:
            applied = False
        if applied:
            self.lost[api] += 1
        await anyio.sleep(self.hold)
        await send({"type": "http.response.start", "status": 504, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<html><body><h1>504 Gateway Time-out</h1></body></html>"})


# -- what wqbot heard back -------------------------------------------------------------------------------
class Spy:
    """Wraps the client's message_send / update_template_card: the answers wqbot received and
    the calls whose outcome it could not know (a transport error after the request went out)."""

    def __init__(self, client):
        from bot.wecom import TransportError

        self.lock = threading.Lock()
        self.ok: Counter = Counter()  # task_id (card id) -> errcode-0 answers received by wqbot
        self.unknown: Counter = Counter()  # task_id -> transport errors (outcome unknown to wqbot)
        self.update_ok: Counter = Counter()  # response_code -> errcode-0 answers to update_template_card

        def spy(fn, key_of, ok, unknown_too=True):
            def wrapper(body):
                try:
                    answer = fn(body)
                except TransportError:
                    if unknown_too:
                        with self.lock:
                            self.unknown[key_of(body)] += 1
                    raise
                with self.lock:
                    ok[key_of(body)] += 1
                return answer

            return wrapper

        client.message_send = spy(client.message_send, lambda b: b["template_card"]["task_id"], self.ok)
        client.update_template_card = spy(
            client.update_template_card, lambda b: b["response_code"], self.update_ok, unknown_too=False
        )


# -- the two sides on loopback ----------------------------------------------------------------------------
class World:
    """The emulator and wqbot's app, each on its own loopback port, wqbot's settings pointing at
    the emulator, and the deployment's WeCom client (`client_for`) tuned for the test: a client
    timeout below the emulator's hold, and time compressed like everything else here (huey's
    retries run at once, see `drain`; sync runs follow each other without the 10-minute
    interval): backoff sleeps are skipped, a failed gettoken is remembered for a fifth of a
    second instead of five (so one refused refresh does not also fail the next run), and the
    client-side rate limits are lifted (a bucket that is never waited for would only refuse)."""

    def __init__(self, settings, lost_answers: dict | None = None, **sim_kw):
        self.base_settings = settings
        self.lost_answers = lost_answers
        self.sim_kw = sim_kw

    def __enter__(self) -> "World":
        import settings as settings_mod
        from bot.app import create_app
        from bot.wecom import client_for, reset_clients
        from sim import create_app as create_sim
        from sim.server import ServerThread, bind

        wq_sock, sim_sock = bind(), bind()
        self.wqbot_url = f"http://127.0.0.1:{wq_sock.getsockname()[1]}"
        self.sim_url = f"http://127.0.0.1:{sim_sock.getsockname()[1]}"
        sim_app = create_sim(sim_config(self.wqbot_url, **self.sim_kw))
        self.sim = sim_app.state.sim
        self.lost = LostAnswers(sim_app, **self.lost_answers) if self.lost_answers is not None else None
        self.settings = dataclasses.replace(
            self.base_settings,
            wecom_api_base=self.sim_url,
            public_url=self.wqbot_url,
            wecom_rate_limit_per_min=10**7,
            wecom_rate_limit_per_hour=10**9,
        )
        self.previous = settings_mod.get_settings()
        settings_mod.override(self.settings)
        reset_clients()
        from bot.wecom import _tokens

        self.fail_ttl = _tokens.FAIL_TTL_TRANSIENT
        _tokens.FAIL_TTL_TRANSIENT = 0.2
        self.client = client_for(self.settings)
        self.client.timeout = CLIENT_TIMEOUT
        self.client._sleep = lambda _seconds: None
        self.spy = Spy(self.client)
        self.servers = [
            ServerThread(self.lost or sim_app, sock=sim_sock),
            ServerThread(create_app(self.settings, init_store=False), sock=wq_sock),
        ]
        for s in self.servers:
            s.start()
        self.ctl = httpx.Client(base_url=self.sim_url, timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        import settings as settings_mod
        from bot.wecom import reset_clients

        self.ctl.close()
        for s in reversed(self.servers):
            s.stop()
        settings_mod.override(self.previous)
        reset_clients()
        from bot.wecom import _tokens

        _tokens.FAIL_TTL_TRANSIENT = self.fail_ttl

    def faults_on(self, **kw) -> list[dict]:
        return add_faults(self.ctl, fault_mix(**kw))

    def faults_off(self) -> None:
        self.ctl.delete("/sim/faults")

    def calls(self, api: str) -> list[dict]:
        """Every logged call to `api` (the log keeps the newest 50,000; the tests stay far below)."""
        out, since = [], 0
        while True:
            page = self.ctl.get("/sim/calls", params={"api": api, "since": since, "limit": 5000}).json()
            out += page["calls"]
            if not page["calls"]:
                return out
            since = page["next_since"]


# -- the queue -----------------------------------------------------------------------------------------------
def drain(huey, rounds: int = 200) -> dict:
    """Run every queued task, and every retry huey schedules, until none is left. A retry's delay
    is not waited out (its eta is taken as reached): what matters here is that huey's retries
    happen, not when. Returns counts of executions and retries."""
    stats = Counter()
    far = None
    for _ in range(rounds):
        ran = False
        while huey.pending_count():
            task = huey.dequeue()
            if task is None:
                break
            huey.execute(task)
            stats["executed"] += 1
            ran = True
        import datetime

        far = far or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(days=1)
        for task in huey.read_schedule(far):
            huey.execute(task, timestamp=far)
            stats["retried"] += 1
            ran = True
        if not ran:
            return dict(stats)
    raise AssertionError(f"the queue did not drain: {dict(stats)}")


def minutes_pass(huey) -> dict:
    """What the periodic sweepers do once their thresholds have passed: re-enqueue outbox rows and
    notifications whose queue entries were spent (huey gave up on them), then drain again."""
    from bot.notify import sweep
    from bot.queue import STALE_AFTER, sweep_outbox
    from store.models import Outbox
    from store.notifications import Notification

    Outbox.update(enqueued_at=Outbox.enqueued_at - STALE_AFTER - 1).execute()
    Notification.update(created_at=Notification.created_at - sweep.STUCK_PUSH_AFTER - 1).execute()
    out = {"outbox": sweep_outbox.call_local(), "pushes": sweep.requeue_pushes()}
    out.update(drain(huey))
    return out


# -- the directory, both sides ----------------------------------------------------------------------------------
def directory_diff(sim) -> list[str]:
    """Every difference between the emulator's directory and wqbot's store, as readable lines."""
    from bot.sync.records import is_active
    from store.directory import Department, User, UserDepartment

    d = sim.directory
    problems = []
    stored = {u.userid: u for u in User.select()}
    members = defaultdict(set)
    for uid, dept in UserDepartment.select(UserDepartment.userid, UserDepartment.department_id).tuples():
        members[uid].add(dept)
    for u in d.users.values():
        row = stored.get(u.userid)
        if row is None:
            problems.append(f"user {u.userid} is missing")
            continue
        want = (u.name, u.status, is_active(u.status), set(u.department))
        have = (row.name, row.status, bool(row.active), members[u.userid])
        if want != have:
            problems.append(f"user {u.userid}: emulator {want}, store {have}")
    for uid, row in stored.items():
        if d.user(uid) is None and row.active:
            problems.append(f"user {uid} left the emulator but is still active")
    depts = {x.id: x for x in Department.select()}
    for x in d.departments.values():
        row = depts.get(x.id)
        want = (x.name, x.parentid if x.id != 1 else None, True)
        have = (row.name, row.parent_id if x.id != 1 else None, bool(row.active)) if row else None
        if want != have:
            problems.append(f"department {x.id}: emulator {want}, store {have}")
    for i, row in depts.items():
        if i not in d.departments and row.active:
            problems.append(f"department {i} left the emulator but is still active")
    return problems


def wrongful_removals(sim, since_seq: int) -> list[str]:
    """Feed entries after `since_seq` that removed someone the emulator still has active."""
    from bot.sync.records import is_active
    from store.directory import Change

    out = []
    for c in Change.select().where(Change.seq > since_seq, Change.kind.in_(("user.deleted", "department.deleted"))):
        if c.kind == "user.deleted":
            u = sim.directory.user(c.ref)
            if u is not None and is_active(u.status):
                out.append(f"seq {c.seq}: user {c.ref} deleted but active in the emulator")
        elif int(c.ref) in sim.directory.departments:
            out.append(f"seq {c.seq}: department {c.ref} deleted but in the emulator")
    return out


def last_seq() -> int:
    from peewee import fn

    from store.directory import Change

    return Change.select(fn.MAX(Change.seq)).scalar() or 0


class Mutator:
    """Changes the emulator's directory through its control API, without change_contact
    callbacks (so only the sync can notice): adds, renames, moves, userid changes, disables,
    deletions, and department adds, renames, moves and deletions."""

    def __init__(self, world: World, seed: int = 5):
        self.w, self.rng = world, random.Random(seed)
        self.n = 0
        self.log: Counter = Counter()

    def _ok(self, r: httpx.Response) -> dict:
        assert r.status_code in (200, 201), r.text
        return r.json()

    def _users(self) -> list:
        return sorted(self.w.sim.directory.users.values(), key=lambda u: u.userid)

    def round(self, k: int) -> None:
        ctl, rng, d = self.w.ctl, self.rng, self.w.sim.directory
        q = {"callback": "false"}
        self.n += 1
        depts = sorted(i for i in d.departments)
        # departments: one new (under a random parent), one renamed, one moved, one deleted (an empty leaf)
        new = self._ok(
            ctl.post("/sim/departments", params=q, json={"name": f"新部门{self.n}", "parentid": rng.choice(depts)})
        )["department"]
        self.log["department added"] += 1
        renamed = rng.choice([i for i in depts if i != 1])
        self._ok(
            ctl.patch(f"/sim/departments/{renamed}", params=q, json={"name": f"{d.departments[renamed].name}·{self.n}"})
        )
        self.log["department renamed"] += 1
        mover = rng.choice([i for i in depts if i != 1])
        parents = [i for i in d.departments if i not in d.subtree(mover) and i != d.departments[mover].parentid]
        for parent in rng.sample(parents, min(5, len(parents))):
            r = ctl.patch(f"/sim/departments/{mover}", params=q, json={"parentid": parent})
            if r.status_code != 409:  # 409: the new parent has a sub-department of that name
                self._ok(r)
                self.log["department moved"] += 1
                break
        leaves = [i for i in d.departments if i not in (1, new["id"]) and not d.children.get(i)]
        if leaves:
            gone = rng.choice(leaves)
            self._ok(ctl.delete(f"/sim/departments/{gone}", params={**q, "move_members_to": 1}))
            self.log["department deleted"] += 1
        depts = sorted(d.departments)
        for _ in range(k):
            self._ok(
                ctl.post(
                    "/sim/users",
                    params=q,
                    json={
                        "userid": f"new{self.n}x{rng.randrange(10**6)}",
                        "name": f"新同事{self.n}-{rng.randrange(1000)}",
                        "department": [rng.choice(depts)],
                        "mobile": f"139{rng.randrange(10**8):08d}",
                    },
                )
            )
            self.log["user added"] += 1
        users = self._users()
        for u in rng.sample(users, k):
            self._ok(ctl.patch(f"/sim/users/{u.userid}", params=q, json={"name": u.name + "·改"}))
            self.log["user renamed"] += 1
        for u in rng.sample(self._users(), k):
            self._ok(ctl.patch(f"/sim/users/{u.userid}", params=q, json={"department": rng.sample(depts, 2)}))
            self.log["user moved"] += 1
        u = rng.choice([u for u in self._users() if u.mobile])
        # an admin changes the userid (allowed once in WeCom); the event is missed, the sync sees it
        self._ok(ctl.patch(f"/sim/users/{u.userid}", params=q, json={"new_userid": f"{u.userid}r{self.n}"}))
        self.log["userid changed"] += 1
        u = rng.choice(self._users())
        self._ok(ctl.patch(f"/sim/users/{u.userid}", params=q, json={"status": 2 if u.status == 1 else 1}))
        self.log["user status flipped"] += 1
        for u in rng.sample(self._users(), k):
            self._ok(ctl.delete(f"/sim/users/{u.userid}", params=q))
            self.log["user deleted"] += 1


def wait_for(predicate, timeout: float = 30.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
