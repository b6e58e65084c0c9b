"""Reading the directory from WeCom, in one of two modes (docs/sync.md; docs/wecom.md, "Directory reads").

list      department/list + user/list(fetch_child=1) on each top department (the root, or each
          department whose parent is outside the visible range): every user arrives once, with
          details, in a handful of calls. Never one call per department. A directory of more
          than SPLIT_OVER departments is read per first-level branch (top's own members, then each
          child subtree) to bound memory: ~20 calls instead of 1.
list_id   what WeCom still allows a 通讯录同步 secret on a server IP first used after
          2022-08-15 (48009) or outside the visible range (60011): department/simplelist and
          user/list_id (IDs and membership, every run), plus user/get and department/get with
          the app token for the users and departments whose details are needed this run.

A listing that fails part-way is marked incomplete: the reconciliation then applies what it
has but disables no one (someone missing from a broken listing has not left).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bot.wecom import SECRET_PAGE, SECRET_VARIABLE, NoPrivilege, NotFound, WeComError, secret_in_use
from settings import Settings

from . import records as R

log = logging.getLogger("wqbot.sync")

FALLBACK_ERRCODES = (48009, 60011)  # the 2022 restrictions: switch to list_id
LIST_ID_PAGE = 10000
# Above this many departments, user/list goes per first-level branch instead of once on the root:
# WeCom answers user/list in one piece, and 100,000 members parse into hundreds of MB of Python
# objects (bench/README.md); per branch the biggest answer is one branch's members.
SPLIT_OVER = 200
DETAIL_THREADS = 8  # concurrent user/get calls; the client's rate limiter paces them


class ModeRefused(Exception):
    """list mode is not allowed here (48009/60011): use list_id."""

    def __init__(self, error: WeComError):
        super().__init__(str(error))
        self.error = error


@dataclass
class Listing:
    mode: str
    departments: dict = field(default_factory=dict)  # id -> department record (name only if known)
    users: dict = field(default_factory=dict)  # userid -> full user record (list mode, or user/get)
    members: dict = field(default_factory=dict)  # userid -> tuple of department ids (list_id mode)
    complete: bool = True
    errors: list = field(default_factory=list)
    calls: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, api: str, n: int = 1) -> None:
        with self._lock:
            self.calls[api] += n

    def fail(self, what: str, error: Exception) -> None:
        self.complete = False
        self.errors.append(f"{what}: {error}")
        log.warning("directory listing incomplete", extra={"what": what, "error": str(error)})


@dataclass(frozen=True)
class Access:
    """Which secret the directory read uses, and where an operator fixes it."""

    creds: str  # "contacts" or "app": the client's credential set
    variable: str  # WECOM_CONTACTS_SECRET or WECOM_APP_SECRET
    page: str  # its WeCom console page


def directory_access(settings: Settings) -> Access:
    """The one answer to "which secret reads the directory": the 通讯录同步 secret when set, else
    the app secret (within its 可见范围). `wqbot sync` and `wqbot doctor` both go by it."""
    creds = secret_in_use(settings, "contacts")
    return Access(creds, SECRET_VARIABLE[creds], SECRET_PAGE[creds])


def read_departments(client) -> list[dict]:
    """department/list with the directory's secret: the first call of list mode, and how the
    mode is decided. ModeRefused when WeCom allows only list_id from here (48009/60011)."""
    try:
        return client.department_list(creds="contacts")
    except WeComError as e:
        if _refused(e):
            raise ModeRefused(e) from None
        raise


def _refused(e: WeComError) -> bool:
    return isinstance(e, NoPrivilege) and getattr(e, "errcode", None) in FALLBACK_ERRCODES


def top_departments(departments: dict) -> list[int]:
    """Departments whose parent is not in the listing: the roots of the visible forest."""
    return sorted(i for i, d in departments.items() if d.get("parent_id") not in departments)


def branches(departments: dict, tops: list[int]) -> list[tuple[int, bool]]:
    """(department, fetch_child) calls that cover every top department's subtree one level down:
    each top's own members, then each child's whole subtree. A member of several branches comes
    once per branch (and is kept once)."""
    children = defaultdict(list)
    for i, d in departments.items():
        children[d.get("parent_id")].append(i)
    out = []
    for t in tops:
        out.append((t, False))
        out.extend((c, True) for c in sorted(children.get(t, ())) if c != t)
    return out


def fetch_list(client, progress=None) -> Listing:
    out = Listing(mode="list")
    out.count("department/list")
    for d in read_departments(client):
        rec = R.department_from_api(d)
        out.departments[rec["id"]] = rec
    calls = [(top, True) for top in top_departments(out.departments)]
    if len(out.departments) > SPLIT_OVER:
        calls = branches(out.departments, [t for t, _ in calls])
    for n, (top, child) in enumerate(calls):
        try:
            out.count("user/list")
            rows = client.user_list(top, fetch_child=child, creds="contacts")
        except WeComError as e:
            if n == 0 and _refused(e):
                raise ModeRefused(e) from None
            out.fail(f"user/list department {top}", e)
            continue
        # pop as we go: the raw answer for a whole corp is the biggest thing this process holds
        rows.reverse()
        while rows:
            u = rows.pop()
            uid = u.get("userid")
            if uid and uid not in out.users:
                out.users[uid] = R.user_from_api(u)
        if progress:
            progress("users", len(out.users), None)
    return out


def fetch_list_id(client, progress=None) -> Listing:
    out = Listing(mode="list_id")
    out.count("department/simplelist")
    for d in client.department_simplelist(creds="contacts"):
        rec = R.department_from_api(d)
        out.departments[rec["id"]] = rec
    members: dict[str, list[int]] = defaultdict(list)
    cursor = ""
    try:
        while True:
            body = {"limit": LIST_ID_PAGE, **({"cursor": cursor} if cursor else {})}
            out.count("user/list_id")
            data = client.call("POST", "/cgi-bin/user/list_id", creds="contacts", json=body)
            for row in data.get("dept_user") or ():
                members[str(row["userid"])].append(int(row["department"]))
            if progress:
                progress("membership", len(members), None)
            cursor = data.get("next_cursor") or ""
            if not cursor:
                break
    except WeComError as e:
        out.fail("user/list_id", e)
    out.members = {uid: tuple(sorted(set(ds))) for uid, ds in members.items()}
    return out


def fetch_user_details(client, listing: Listing, userids: list[str], progress=None) -> dict:
    """user/get (app token) for each userid, DETAIL_THREADS at a time; returns the outcome counts.

    A member the app may not see (60011/60111/50002…) keeps the membership list_id gave; the
    run reports how many, so the operator can widen the app's 可见范围."""
    stats: Counter[str] = Counter()
    lock = threading.Lock()

    def one(uid: str):
        try:
            listing.count("user/get")
            rec = R.user_from_api(client.user_get(uid))
        except NotFound:
            with lock:
                stats["not_found"] += 1
            return
        except NoPrivilege:
            with lock:
                stats["no_privilege"] += 1
            return
        except WeComError as e:
            with lock:
                stats["failed"] += 1
                if stats["failed"] <= 5:
                    listing.errors.append(f"user/get {uid}: {e}")
            return
        with lock:
            listing.users[uid] = rec
            stats["fetched"] += 1

    if userids:
        # progress (which renews the lease in the store) is reported from this thread only: the
        # pool's threads touch nothing but the WeCom client
        with ThreadPoolExecutor(max_workers=min(DETAIL_THREADS, len(userids)), thread_name_prefix="sync-get") as pool:
            for i, _ in enumerate(pool.map(one, userids), 1):
                if progress and (i % 200 == 0 or i == len(userids)):
                    progress("details", i, len(userids))
    return stats


def fetch_department_details(client, listing: Listing, ids: list[int]) -> dict:
    stats: Counter[str] = Counter()
    for i in ids:
        try:
            listing.count("department/get")
            d = R.department_from_api(client.department_get(i))
        except (NotFound, NoPrivilege):
            stats["unavailable"] += 1
            continue
        except WeComError as e:
            stats["failed"] += 1
            if stats["failed"] <= 5:
                listing.errors.append(f"department/get {i}: {e}")
            continue
        listing.departments[i] = {**listing.departments.get(i, {}), **d}
        stats["fetched"] += 1
    return stats
