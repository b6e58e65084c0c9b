"""Helpers the sign-notification tests share: WeCom faked at its HTTP edge with respx, a real
webhook receiver on 127.0.0.1 that verifies signatures as 微签 would, taps as WeCom sends them,
and a way to drain the huey queue by hand.

The fixtures `fake_wecom`, `webhook_receiver` and `hook_settings` (tests/conftest.py) are built
from FakeWeCom and Receiver here.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import respx
from httpx import Response

from tests.conftest import TEST_ENV
from tests.support import message, webhook_signed_at

API = "http://wecom.test"
AUTH = {"Authorization": f"Bearer {TEST_ENV['WEIQIAN_API_TOKEN']}"}
WEBHOOK_SECRET = "webhook-secret-DO-NOT-LOG-5c2e"


class FakeWeCom:
    """message/send and update_template_card as WeCom answers them; every call is recorded.

    `invalid`: userids WeCom does not know (reported in `invaliduser`, lower-cased, as WeCom does;
    all of a call's recipients invalid → 81013). `fail_sends`: answers for the next sends
    (None: answer normally, an HTTP status, or an errcode dict), one per call, then normal."""

    def __init__(self, mock: respx.MockRouter):
        self.mock = mock
        self.sends: list[dict] = []
        self.updates: list[dict] = []
        self.invalid: set[str] = set()
        self.fail_sends: list = []
        self.fail_updates: list = []
        self._n = itertools.count(1)
        self.lock = threading.Lock()
        mock.get(API + "/cgi-bin/gettoken").mock(
            return_value=Response(
                200, json={"errcode": 0, "errmsg": "ok", "access_token": "ACCESS_TOKEN_FOR_TESTS", "expires_in": 7200}
            )
        )
        mock.post(API + "/cgi-bin/message/send").mock(side_effect=self._send)
        mock.post(API + "/cgi-bin/message/update_template_card").mock(side_effect=self._update)
        # the 工作台 tile: template and per-member data; `fail_workbench`: errcode answers, one per call
        self.workbench_templates: list[dict] = []
        self.workbench_data: list[dict] = []
        self.fail_workbench: list[dict] = []
        mock.post(API + "/cgi-bin/agent/set_workbench_template").mock(side_effect=self._workbench)
        mock.post(API + "/cgi-bin/agent/set_workbench_data").mock(side_effect=self._workbench)
        mock.route(host="127.0.0.1").pass_through()  # the local webhook receiver is real

    def _send(self, request):
        body = json.loads(request.content)
        with self.lock:
            self.sends.append(body)
            n = next(self._n)
            f = self.fail_sends.pop(0) if self.fail_sends else None
            if f is not None:
                return Response(f, text="busy") if isinstance(f, int) else Response(200, json=f)
        users = body["touser"].split("|")
        bad = [u.lower() for u in users if u.lower() in {i.lower() for i in self.invalid}]
        if len(bad) == len(users):
            return Response(200, json={"errcode": 81013, "errmsg": "user & party & tag all invalid"})
        answer = {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(bad), "msgid": f"MSG{n}"}
        card = body.get("template_card") or {}
        if card.get("card_type") == "button_interaction" or card.get("action_menu"):
            answer["response_code"] = f"RC-send-{n}"
        return Response(200, json=answer)

    def _update(self, request):
        body = json.loads(request.content)
        with self.lock:
            self.updates.append(body)
            f = self.fail_updates.pop(0) if self.fail_updates else None
            if f is not None:
                return Response(f, text="busy") if isinstance(f, int) else Response(200, json=f)
        return Response(200, json={"errcode": 0, "errmsg": "ok", "invaliduser": []})

    def _workbench(self, request):
        body = json.loads(request.content)
        with self.lock:
            if request.url.path.endswith("set_workbench_template"):
                self.workbench_templates.append(body)
            else:
                self.workbench_data.append(body)
            f = self.fail_workbench.pop(0) if self.fail_workbench else None
        return Response(200, json=f or {"errcode": 0, "errmsg": "ok"})

    def tiles(self) -> list[tuple[str, str, str]]:
        """(userid, 待审批, 待签署) of every set_workbench_data call, in order."""
        return [(b["userid"], *(i["data"] for i in b["keydata"]["items"])) for b in self.workbench_data]

    def recipients_of_sends(self) -> list[str]:
        return [u for s in self.sends for u in s["touser"].split("|")]


class Receiver:
    """微签's side of the webhook: verifies X-Wqbot-Signature over the raw body (constant time)
    and answers with the next status in `statuses` (then 200)."""

    def __init__(self):
        self.deliveries: list[dict] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                signed_at = webhook_signed_at(WEBHOOK_SECRET, self.headers.get("X-Wqbot-Signature", ""), raw)
                ok = signed_at is not None
                with outer.lock:
                    status = outer.statuses.pop(0) if outer.statuses else 200
                    if not ok:
                        status = 401
                    outer.deliveries.append(
                        {
                            "raw": raw,
                            "headers": dict(self.headers),
                            "signature_ok": ok,
                            "signed_at": signed_at,
                            "status": status,
                            "at": time.time(),
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/wqbot/webhook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def accepted(self) -> list[dict]:
        return [d for d in self.deliveries if 200 <= d["status"] < 300]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def tap_xml(
    user: str, card_id: str, key: str = "approve", code: str | None = None, create_time: int | None = None
) -> str:
    return message(
        FromUserName=user,
        CreateTime=create_time or int(time.time()),
        MsgType="event",
        Event="template_card_event",
        EventKey=key,
        TaskId=card_id,
        CardType="button_interaction",
        ResponseCode=code or f"RC-tap-{user}-{key}",
        AgentID=1000002,
    )


def menu_xml(user: str, card_id: str, code: str | None = None) -> str:
    return message(
        FromUserName=user,
        MsgType="event",
        Event="template_card_menu_event",
        EventKey="open",
        TaskId=card_id,
        CardType="text_notice",
        ResponseCode=code or f"RC-menu-{user}",
        AgentID=1000002,
    )


def deadline_in(days: float) -> str:
    """An ISO 8601 deadline as 微签 sends it: 18:00 China time, at least `days` from the clock
    the code reads (negative: in the past). Never a fixed date, so no test expires on its own."""
    from store.clock import CST, now

    at = datetime.fromtimestamp(now() + days * 86400, CST).replace(hour=18, minute=0, second=0, microsecond=0)
    return at.isoformat()


def shown_deadline(deadline: str) -> str:
    """The 截止时间 a card shows for an ISO deadline: China time, to the minute."""
    from store.clock import CST

    return datetime.fromisoformat(deadline).astimezone(CST).strftime("%Y-%m-%d %H:%M")


def notification(**fields) -> dict:
    body = {
        "id": "wq-evt-000123",
        "type": "approve",
        "task_id": "T-1001",
        "title": "采购合同-2026-001",
        "description": "张三 发起了审批，请处理",
        "initiator": "zhangsan",
        "recipients": ["lisi", "wangwu"],
        "url": "/pages/task/task_detail?id=T-1001",
        "deadline": deadline_in(days=7),
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def drain(huey, limit: int = 1000) -> int:
    """Run every task waiting in the queue (and those they enqueue) in this thread."""
    n = 0
    while n < limit:
        # ask first: a Redis dequeue on an empty queue blocks for a second
        task = huey.dequeue() if huey.pending_count() else None
        if task is None:
            return n
        huey.execute(task)
        n += 1
    raise AssertionError("the queue did not drain")


def add_member(userid: str, name: str = "", active: bool = True, account: str | None = None) -> None:
    from store.directory import User

    User.create(userid=userid, name=name or userid, active=active, status=1 if active else 5, account=account)


def first_card_id() -> str:
    from store.notifications import NotifyCard

    return NotifyCard.select().order_by(NotifyCard.batch).first().card_id
