"""The Java client for 微签's developers (clients/java/), compiled with javac and run against a
live `wqbot serve` + `wqbot sim`:

- the change feed paged from Java, from 0 and from a cursor, is exactly the feed;
- a notification posted from Java reaches the emulator's members as cards;
- a member's tap produces a webhook the Java verifier accepts; the same webhook with one byte
  changed is refused, and the untouched one sent again is a duplicate;
- a ticket from a login through the emulator's OAuth page is redeemed from Java exactly once;
- the verifier against signatures made here with Python's hmac: tampered bodies, wrong
  secrets, old or future timestamps and the old `sha256=` form are all refused.

The webhook parts need the timestamped signature (X-Wqbot-Signature: t=…,v1=…,v0=…).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.api.live import LiveWqbot

pytestmark = pytest.mark.external

ROOT = Path(__file__).resolve().parents[2]
JAVA_SRC = ROOT / "clients" / "java" / "src"
MAIN = "wqbot.client.ClientCheck"


@pytest.fixture(scope="module")
def classes(tmp_path_factory) -> Path:
    javac = shutil.which("javac")
    assert javac, "javac is not on PATH: install a JDK 17 (.ci/install-extras installs openjdk-17-jdk-headless)"
    out = tmp_path_factory.mktemp("java-classes")
    sources = sorted(str(p) for p in JAVA_SRC.rglob("*.java"))
    r = subprocess.run(
        [javac, "--release", "17", "-Xlint:all", "-Werror", "-encoding", "UTF-8", "-d", str(out), *sources],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, f"javac failed:\n{r.stdout}{r.stderr}"
    return out


def java(classes: Path, *args: str) -> list[dict]:
    r = subprocess.run(
        ["java", "-cp", str(classes), MAIN, *args], capture_output=True, text=True, encoding="utf-8", timeout=60
    )
    assert r.returncode == 0, f"java {args[0]} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def hexmac(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def signed(secret: str, body: bytes, t: int) -> str:
    return f"t={t},v1={hexmac(secret, f'{t}.'.encode() + body)},v0={hexmac(secret, body)}"


def one_byte_changed(raw: bytes, at: bytes) -> bytes:
    i = raw.index(at)
    return raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]


# -- the verifier on its own ----------------------------------------------------------------------
def test_verifier_accepts_wqbots_signature_and_refuses_everything_else(classes, tmp_path):
    secret = "whsec-" + secrets.token_hex(8)
    body = json.dumps({"event": "task.action", "action": "approve", "userid": "李四"}, ensure_ascii=False).encode()
    path = tmp_path / "body.json"
    path.write_bytes(body)
    now = int(time.time())

    def verify(header: str, at: int, data: bytes = body, key: str = secret) -> dict:
        path.write_bytes(data)
        return java(classes, "verify", key, header, str(path), str(at))[0]

    good = signed(secret, body, now)
    assert verify(good, now) == {"valid": True}
    assert verify(good, now + 299) == {"valid": True}  # within 300 s
    assert verify(good, now + 301)["valid"] is False and "older than 300" in verify(good, now + 301)["reason"]
    assert verify(good, now - 301)["valid"] is False  # from the future: a wrong clock
    assert verify(good, now, one_byte_changed(body, b"approve"))["valid"] is False
    assert verify(good, now, key=secret + "x")["valid"] is False
    # the timestamp is signed: moving t keeps v1 but no longer verifies
    assert verify(good.replace(f"t={now}", f"t={now + 1}"), now)["valid"] is False
    # v0 alone (body only) or the old sha256= form carries no timestamp and is refused
    assert verify(f"t={now},v0={hexmac(secret, body)}", now)["valid"] is False
    assert verify("sha256=" + hexmac(secret, body), now)["valid"] is False
    # several v1 values (a secret being rotated): any one that matches will do
    other = hexmac("old-secret", f"{now}.".encode() + body)
    assert verify(f"t={now},v1={other},v1={good.split('v1=')[1].split(',')[0]}", now) == {"valid": True}


# -- against a live wqbot ------------------------------------------------------------------------
class Receiver:
    """`ClientCheck receive`: the Java WebhookReceiver standing in for 微签's endpoint."""

    def __init__(self, classes: Path, secret: str):
        self.proc = subprocess.Popen(
            ["java", "-cp", str(classes), MAIN, "receive", secret],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.next(30)
        self.url = f"http://127.0.0.1:{first['listening']}/webhook"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def next(self, timeout: float = 30) -> dict:
        line = self.lines.get(timeout=timeout)
        try:
            return json.loads(line)
        except ValueError:
            raise AssertionError(f"the Java receiver printed: {line}") from None

    def stop(self) -> None:
        self.proc.stdin.close()  # it runs until stdin closes
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def wait_for(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def test_java_client_against_a_live_wqbot(classes, tmp_path):
    secret = "whsec-" + secrets.token_hex(8)
    receiver = Receiver(classes, secret)
    env = {"WEIQIAN_WEBHOOK_URL": receiver.url, "WEIQIAN_WEBHOOK_SECRET": secret}
    try:
        with LiveWqbot(tmp_path, env=env) as live:
            live.sync()
            token, http = live.api_token, httpx.Client(timeout=30)

            # 1. the change feed, paged from Java 7 at a time: every change once, in seq order
            feed = http.get(live.url + "/api/v1/org/changes", params={"limit": 1000}, headers=live.auth).json()
            seqs = [c["seq"] for c in feed["changes"]]
            assert len(seqs) > 14
            lines = java(classes, "changes", live.url, token, "0", "7")
            assert [x["seq"] for x in lines[:-1]] == seqs and lines[-1] == {"next": seqs[-1]}
            assert [(x["kind"], str(x["id"])) for x in lines[:-1]] == [
                (c["kind"], str(c["id"])) for c in feed["changes"]
            ]
            middle = seqs[len(seqs) // 2]
            lines = java(classes, "changes", live.url, token, str(middle), "5")
            assert [x["seq"] for x in lines[:-1]] == [s for s in seqs if s > middle]

            # 2. a notification posted from Java reaches the emulator's members
            users = http.get(live.url + "/api/v1/org/users", headers=live.auth).json()["users"]
            people = [u["userid"] for u in users if u["active"]][:3]
            nid, task = f"wq-java-{secrets.token_hex(3)}", f"T-JAVA-{secrets.token_hex(2)}"
            body = {
                "id": nid,
                "type": "approve",
                "task_id": task,
                "title": "采购合同-2026-001",
                "description": "张三 发起了审批，请处理",
                "recipients": people,
                "url": f"/pages/task/task_detail?id={task}",
            }
            (tmp_path / "notification.json").write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
            posted = java(classes, "notify", live.url, token, str(tmp_path / "notification.json"))[0]
            assert posted["status"] == 202 and posted["body"]["id"] == nid

            def cards():
                got = {}
                for p in people:
                    msgs = http.get(
                        live.sim_url + "/sim/messages", params={"userid": p, "msgtype": "template_card"}
                    ).json()["messages"]
                    if msgs:
                        got[p] = msgs[-1]["task_id"]
                return got if len(got) == len(people) else None

            card_of = wait_for("each member's card in the emulator", cards)
            status = wait_for(
                "GET the notification from Java: sent",
                lambda: (s := java(classes, "notification", live.url, token, nid)[0])["body"]["status"] == "sent" and s,
            )
            assert {r["userid"] for r in status["body"]["recipients"]} == set(people)

            # 3. a tap → a webhook the Java verifier accepts
            tapper = people[0]
            tap = http.post(
                live.sim_url + "/sim/send",
                json={"userid": tapper, "type": "card", "task_id": card_of[tapper], "key": "approve"},
            ).json()
            assert tap["status"] == 200, tap
            hook = receiver.next(60)
            assert hook["accepted"] is True and hook["reason"] == "new", hook
            raw = base64.b64decode(hook["body_b64"])
            action = json.loads(raw)
            assert (action["notification_id"], action["task_id"], action["action"], action["userid"]) == (
                nid,
                task,
                "approve",
                tapper,
            )
            assert hook["delivery"] == action["delivery"] and hook["signature"].startswith("t=")

            # 4. the same webhook with one byte changed is refused; the untouched one again is a duplicate
            headers = {
                "Content-Type": "application/json",
                "X-Wqbot-Event": "task.action",
                "X-Wqbot-Delivery": hook["delivery"],
                "X-Wqbot-Signature": hook["signature"],
            }
            r = http.post(receiver.url, content=one_byte_changed(raw, b"approve"), headers=headers)
            assert r.status_code == 401 and "v1 does not match" in r.text
            assert receiver.next()["accepted"] is False
            r = http.post(receiver.url, content=raw, headers=headers)
            assert r.status_code == 200 and receiver.next() | {"body_b64": ""} == hook | {
                "reason": "duplicate",
                "body_b64": "",
            }

            # 5. a ticket from a login through the emulator, redeemed from Java exactly once
            who = people[1]
            ticket = live.login_ticket(who)
            procs = [
                subprocess.Popen(
                    ["java", "-cp", str(classes), MAIN, "ticket", live.url, token, ticket],
                    stdout=subprocess.PIPE,
                    text=True,
                    encoding="utf-8",
                )
                for _ in range(2)
            ]
            results = sorted((json.loads(p.communicate(timeout=60)[0]) for p in procs), key=lambda x: x["status"])
            assert results[0]["status"] == 200 and results[0]["identity"]["userid"] == who
            assert results[0]["identity"]["via"] == "h5"
            assert results[1] == {"status": 410, "error": "ticket_used"}
            assert java(classes, "ticket", live.url, token, ticket)[0] == {"status": 410, "error": "ticket_used"}
            assert java(classes, "ticket", live.url, token, "never-issued-" + secrets.token_hex(8))[0] == {
                "status": 404,
                "error": "ticket_unknown",
            }
            http.close()
    finally:
        receiver.stop()
