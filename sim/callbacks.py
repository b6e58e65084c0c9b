"""Callbacks the emulator makes, as WeCom does: encrypted, signed POSTs to the app's 接收消息 URL
and the 通讯录同步 event server, plus the console's URL check (GET with echostr).

Each delivery returns (and logs) the HTTP status and the passive reply, decrypted and its
signature checked, so a test can assert on exactly what the member would see."""

from __future__ import annotations

import os
import secrets
import time
from collections import deque
from urllib.parse import urlencode

import httpx

from bot.callback.xml import XMLError, document, parse
from bot.crypto import CryptoError, WeComCrypto

BODY_LOG_LIMIT = 4000


def _with_query(url: str, params: dict) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


class Callbacks:
    def __init__(self, sim):
        self.sim = sim
        self.log: deque[dict] = deque(maxlen=5000)
        self.seq = 0

    def reset(self) -> None:
        self.log.clear()

    def target(self, which: str) -> tuple[str, WeComCrypto | None, bool]:
        """(url, crypto, is_contacts_server) for "app" or "contacts"."""
        cfg = self.sim.cfg
        if which == "contacts":
            url, token, key = cfg.contacts_target
            is_contacts = bool(cfg.contacts_callback_url)
        else:
            url, token, key = cfg.callback_url, cfg.token, cfg.aes_key
            is_contacts = False
        crypto = WeComCrypto(token, key, cfg.corp_id) if url else None
        return url, crypto, is_contacts

    # -- plaintexts ------------------------------------------------------------------------
    def member_event(self, userid: str, fields: dict) -> dict:
        return {
            "ToUserName": self.sim.cfg.corp_id,
            "FromUserName": userid,
            "CreateTime": int(self.sim.clock.now()),
            **fields,
            "AgentID": self.sim.cfg.agent_id,
        }

    def change_contact(self, change_type: str, fields: dict) -> dict:
        return {
            "ToUserName": self.sim.cfg.corp_id,
            "FromUserName": "sys",
            "CreateTime": int(self.sim.clock.now()),
            "MsgType": "event",
            "Event": "change_contact",
            "ChangeType": change_type,
            **fields,
        }

    # -- delivery ---------------------------------------------------------------------------
    async def deliver(self, which: str, fields: dict, label: str = "") -> dict:
        cfg = self.sim.cfg
        url, crypto, is_contacts = self.target(which)
        self.seq += 1
        result = {
            "seq": self.seq,
            "at": time.time(),
            "target": which,
            "url": url,
            "event": label,
            "fields": fields,
            "status": None,
            "body": None,
            "reply": None,
            "reply_fields": None,
            "reply_error": None,
            "attempts": 0,
            "error": None,
            "ms": None,
        }
        if not url:
            result["error"] = (
                "no callback URL configured: start the emulator with --callback-url (or set it with PATCH /sim/config)"
            )
            self.log.append(result)
            return result
        plaintext = document(fields)
        # stamped by the emulated world's clock (/sim/clock), as WeCom stamps by its own: a wqbot
        # that follows that clock (SIM_CLOCK_URL) checks the stamp's freshness against the same time
        ts = str(int(self.sim.clock.now()))
        nonce = secrets.token_hex(5)
        enc, sig = crypto.encrypt_message(plaintext, ts, nonce)
        envelope = {"ToUserName": cfg.corp_id, "Encrypt": enc}
        envelope["AgentID"] = "" if is_contacts else str(cfg.agent_id)
        body = document(envelope).encode()
        target = _with_query(url, {"msg_signature": sig, "timestamp": ts, "nonce": nonce})
        t0 = time.perf_counter()
        async with httpx.AsyncClient(timeout=cfg.callback_timeout) as client:
            for attempt in range(1, cfg.callback_retries + 2):
                result["attempts"] = attempt
                try:
                    r = await client.post(target, content=body, headers={"Content-Type": "text/xml"})
                except (httpx.ConnectError, httpx.TimeoutException) as e:
                    result["error"] = f"{type(e).__name__}: {e}"
                    if attempt <= cfg.callback_retries:
                        await _sleep(cfg.callback_retry_interval)
                        continue
                    break
                except httpx.HTTPError as e:
                    result["error"] = f"{type(e).__name__}: {e}"
                    break
                result["error"] = None
                result["status"] = r.status_code
                text = r.text
                result["body"] = text[:BODY_LOG_LIMIT]
                if r.status_code == 200 and text.strip():
                    self._open_reply(crypto, text, result)
                break
        result["ms"] = round((time.perf_counter() - t0) * 1000, 1)
        self.log.append(result)
        return result

    @staticmethod
    def _open_reply(crypto: WeComCrypto, text: str, result: dict) -> None:
        try:
            env = parse(text)
            missing = [k for k in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce") if not env.get(k)]
            if missing:
                raise XMLError("passive reply lacks " + ", ".join(missing))
            reply = crypto.decrypt_message(env["MsgSignature"], str(env["TimeStamp"]), env["Nonce"], env["Encrypt"])
            result["reply"] = reply
            result["reply_fields"] = parse(reply)
        except (XMLError, CryptoError) as e:
            result["reply_error"] = f"{type(e).__name__}: {e}"

    async def verify_url(self, which: str) -> dict:
        """The console's check on Save: GET with an encrypted echostr; the body must be the plaintext exactly."""
        url, crypto, _ = self.target(which)
        out = {"target": which, "url": url, "ok": False, "status": None, "body": None, "ms": None, "error": None}
        if not url:
            out["error"] = "no callback URL configured"
            return out
        echo = str(int.from_bytes(os.urandom(8), "big"))
        ts, nonce = str(int(self.sim.clock.now())), secrets.token_hex(5)
        enc = crypto.encrypt(echo)
        params = {"msg_signature": crypto.sign(ts, nonce, enc), "timestamp": ts, "nonce": nonce, "echostr": enc}
        t0 = time.perf_counter()
        try:
            async with httpx.AsyncClient(timeout=self.sim.cfg.callback_timeout) as client:
                r = await client.get(_with_query(url, params))
        except httpx.HTTPError as e:
            out["error"] = f"{type(e).__name__}: {e}"
            return out
        out["ms"] = round((time.perf_counter() - t0) * 1000, 1)
        out["status"] = r.status_code
        out["body"] = r.text[:BODY_LOG_LIMIT]
        if r.status_code != 200:
            out["error"] = f"HTTP {r.status_code}: WeCom's console would say 回调URL验证失败 (40057)"
        elif r.text != echo:
            out["error"] = (
                "the body is not the bare decrypted echostr (no quotes, BOM, whitespace or JSON): "
                "WeCom's console would say 回调URL验证失败 (40057)"
            )
        elif out["ms"] > 1000:
            out["error"] = "answered correctly but slower than WeCom's 1 s limit for the URL check"
        else:
            out["ok"] = True
        return out


async def _sleep(seconds: float) -> None:
    import anyio

    if seconds > 0:
        await anyio.sleep(seconds)
