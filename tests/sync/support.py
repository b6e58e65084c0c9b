"""A fake WeCom directory at the HTTP edge (respx), shared by the sync tests (and the scaled-out
reliability run)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import httpx
import respx

BASE = "http://wecom.test"
APP_TOKEN, CONTACTS_TOKEN = "tok-app", "tok-contacts"


class FakeWeCom:
    """Departments and users as WeCom would serve them, with switches for its restrictions.

    refuse_list: department/list and user/list answer 48009 (2022 new-IP rule) for the contacts token.
    hide: fields user/get|list leave out (the 2022 privacy rules: {"mobile", "email"}).
    fail: paths (or "user/list:<dept>", "user/list_id:<page>") that answer an error.
    """

    def __init__(self, settings):
        self.settings = settings
        self.departments: dict[int, dict] = {}
        self.users: dict[str, dict] = {}
        self.refuse_list = False
        self.hide: set[str] = set()
        self.fail: set[str] = set()
        self.calls = Counter()
        self.list_id_page = 10000
        self.delay = 0.0
        self.lock = threading.Lock()
        self.user_gets: list[str] = []

    # -- building the directory ----------------------------------------------------------------
    def dept(self, id: int, name: str, parent: int | None = 1, order: int = 0):
        self.departments[id] = {"id": id, "name": name, "parentid": parent if id != 1 else 0, "order": order}
        return self

    def user(self, userid: str, name: str, departments=(1,), **fields):
        u = {
            "userid": userid,
            "name": name,
            "department": list(departments),
            "order": fields.pop("order", [0] * len(departments)),
            "is_leader_in_dept": fields.pop("is_leader_in_dept", [0] * len(departments)),
            "main_department": fields.pop("main_department", departments[0] if departments else 1),
            "status": fields.pop("status", 1),
            "position": fields.pop("position", ""),
            "mobile": fields.pop("mobile", ""),
            "email": fields.pop("email", ""),
            **fields,
        }
        self.users[userid] = u
        return self

    def standard(self, n_users: int = 5):
        self.dept(1, "总公司", None).dept(2, "研发部", 1, 10).dept(3, "测试组", 2, 5)
        for i in range(n_users):
            self.user(
                f"u{i:03d}",
                f"员工{i}",
                departments=(2 if i % 2 else 3,),
                mobile=f"1380000{i:04d}",
                email=f"u{i}@example.com",
                position="工程师",
            )
        return self

    # -- serving -------------------------------------------------------------------------------
    def subtree(self, root: int) -> set[int]:
        out, todo = set(), [root]
        while todo:
            d = todo.pop()
            if d in out or d not in self.departments:
                continue
            out.add(d)
            todo.extend(i for i, x in self.departments.items() if x["parentid"] == d and i != d)
        return out

    def public(self, u: dict) -> dict:
        return {k: v for k, v in u.items() if k not in self.hide}

    def _answer(self, data: dict | None = None, errcode: int = 0, errmsg: str = "ok") -> httpx.Response:
        return httpx.Response(200, json={"errcode": errcode, "errmsg": errmsg, **(data or {})})

    def handle(self, request: httpx.Request) -> httpx.Response:
        parts = urlsplit(str(request.url))
        path = parts.path.removeprefix("/cgi-bin/")
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.calls[path] += 1
        if self.delay:
            import time

            time.sleep(self.delay)
        if path == "gettoken":
            tok = CONTACTS_TOKEN if q.get("corpsecret") == self.settings.wecom_contacts_secret else APP_TOKEN
            return self._answer({"access_token": tok, "expires_in": 7200})
        token = q.get("access_token")
        if path in self.fail:
            return self._answer(errcode=60123, errmsg="invalid party id (injected failure)")
        if path in ("department/list", "user/list") and self.refuse_list and token == CONTACTS_TOKEN:
            return self._answer(errcode=48009, errmsg="api forbidden for new ip")
        if path == "department/list":
            ids = self.subtree(int(q["id"])) if q.get("id") else set(self.departments)
            return self._answer({"department": [dict(self.departments[i]) for i in sorted(ids)]})
        if path == "department/simplelist":
            return self._answer(
                {
                    "department_id": [
                        {"id": d["id"], "parentid": d["parentid"], "order": d["order"]}
                        for d in self.departments.values()
                    ]
                }
            )
        if path == "department/get":
            d = self.departments.get(int(q["id"]))
            return self._answer({"department": dict(d)}) if d else self._answer(errcode=60123, errmsg="no dept")
        if path == "user/get":
            with self.lock:
                self.user_gets.append(q["userid"])
            u = self.users.get(q["userid"])
            return self._answer(self.public(u)) if u else self._answer(errcode=60111, errmsg="userid not found")
        if path == "user/list":
            dept = int(q["department_id"])
            if f"user/list:{dept}" in self.fail:
                return self._answer(errcode=60123, errmsg="injected failure")
            ids = self.subtree(dept) if q.get("fetch_child") == "1" else {dept}
            rows = [self.public(u) for u in self.users.values() if set(u["department"]) & ids]
            return self._answer({"userlist": rows})
        if path == "user/list_id":
            if token != CONTACTS_TOKEN:
                return self._answer(errcode=48002, errmsg="api forbidden")
            body = json.loads(request.content or b"{}")
            start = int(body.get("cursor") or 0)
            page = start // self.list_id_page
            if f"user/list_id:{page}" in self.fail:
                return self._answer(errcode=60123, errmsg="injected failure")
            rows = [{"userid": u["userid"], "department": d} for u in self.users.values() for d in u["department"]]
            chunk = rows[start : start + self.list_id_page]
            nxt = str(start + self.list_id_page) if start + self.list_id_page < len(rows) else ""
            return self._answer({"dept_user": chunk, "next_cursor": nxt})
        return httpx.Response(404)

    @contextlib.contextmanager
    def mounted(self):
        with respx.mock(base_url=BASE, assert_all_called=False) as mock:
            mock.route().mock(side_effect=self.handle)
            yield self

    def api_calls(self) -> dict:
        return {k: v for k, v in self.calls.items() if k != "gettoken"}


def fast_client(settings):
    """A WeCom client of its own (fresh tokens and rate buckets) that does not sleep on retries."""
    from bot.wecom import WeComClient

    return WeComClient(settings, sleep=lambda s: None)
