"""The start-up self-check of `wqbot serve` and `wqbot worker`: one structured log record of what
the process runs with, so a misconfigured start is not a silent one.

    {"msg": "self-check", "role": "serve", "backend": "sqlite", "queue": "embedded",
     "wecom_enabled": true, "off": ["PC_URL: PC QR-code login"], "wecom": "ok" | [problems…]}

- backend and queue; WECOM_ENABLED;
- which optional features are off because their setting is empty (H5_URL, PC_URL, the webhook,
  the contacts callback): the same list `wqbot doctor` reports;
- a quick `doctor` pass against WeCom (a token for each secret, from the deployment's shared cache
  when there is one, agent/get, the directory read),
  bounded by DEADLINE: start-up never waits longer for WeCom; a pass still running then is
  reported as such and left to finish on its own (a daemon thread).

The record is WARNING when something needs the operator (each problem with its fix), else INFO.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import IO, Any

from bot.ops.doctor import Check, Doctor
from settings import Settings

log = logging.getLogger("wqbot.selfcheck")

DEADLINE = 4.5  # seconds; start-up waits at most this long for the WeCom pass (under the 5 s promise)


def features_off(s: Settings) -> list[str]:
    off = []
    if not s.h5_url:
        off.append("H5_URL is empty: H5 login answers 登录入口尚未配置 (set H5_URL)")
    if not s.pc_url:
        off.append("PC_URL is empty: PC QR-code login is off")
    if not s.weiqian_webhook_url:
        off.append("WEIQIAN_WEBHOOK_URL is empty: no task.action webhooks")
    if not s.contacts_callback_enabled:
        off.append("WECOM_CONTACTS_TOKEN/WECOM_CONTACTS_AES_KEY are empty: no live directory events")
    return off


def wecom_pass(s: Settings, deadline: float = DEADLINE) -> list[Check] | None:
    """doctor's WeCom checks, or None when they did not finish within `deadline` seconds."""
    doctor = Doctor(settings=s)
    done = threading.Event()

    def run() -> None:
        try:
            doctor.check_tokens(fresh=False)  # the deployment's shared tokens: no gettoken per process
            doctor.check_agent()
            doctor.check_directory()
        except Exception as e:  # a self-check never stops start-up
            doctor.add("self-check", False, f"{type(e).__name__}: {e}")
        finally:
            done.set()

    threading.Thread(target=run, name="wqbot-selfcheck", daemon=True).start()
    if not done.wait(deadline):
        return None
    return list(doctor.checks)


def selfcheck(s: Settings, role: str, deadline: float = DEADLINE) -> dict[str, Any]:
    """Run the checks, log them as one record, and return what was logged."""
    record: dict[str, Any] = {
        "role": role,
        "backend": "postgresql" if s.database_url.startswith("postgres") else "sqlite",
        "queue": "embedded" if s.queue_is_embedded else "redis",
        "wecom_enabled": s.wecom_enabled,
        "off": features_off(s),
    }
    problems: list[str] = []
    if not s.wecom_enabled:
        problems.append(
            "WECOM_ENABLED=false: no directory sync, no pushes, no card updates "
            "— fix: set WECOM_ENABLED=true (微签 form: 开启企业微信) when the corp goes live"
        )
    if not s.h5_url:
        problems.append(
            "H5_URL is empty: employees opening the app get 登录入口尚未配置 — fix: set H5_URL to 微签 H5's login page"
        )
    checks = wecom_pass(s, deadline) if s.wecom_enabled else None
    if not s.wecom_enabled:
        record["wecom"] = "not checked: WECOM_ENABLED=false"
    elif checks is None:
        record["wecom"] = f"not answered within {deadline:g} s (still checking; run `wqbot doctor`)"
        problems.append(record["wecom"])
    else:
        failed = [c.line() for c in checks if not c.ok]
        record["wecom"] = failed or "ok"
        problems.extend(failed)
    record["problems"] = problems
    head = f"self-check ({role}, {record['backend']}, {record['queue']} queue)"
    if problems:
        # the message alone says it all (text logs show no extra fields); JSON logs get the fields too
        log.warning("%s: %d to fix: %s", head, len(problems), " | ".join(problems), extra={"selfcheck": record})
    else:
        log.info("%s: ok", head, extra={"selfcheck": record})
    return record


# -- one consumer for the embedded queue ----------------------------------------------------------
def consumer_lock_path(s: Settings) -> Path | None:
    """The lock file beside the embedded (SQLite) queue; None for Redis or memory://."""
    if not s.queue_url.startswith("sqlite:///") or s.queue_url.startswith("sqlite:///:memory:"):
        return None
    return Path(s.queue_url[len("sqlite:///") :] + ".consumer.lock")


def claim_consumer(s: Settings, role: str) -> tuple[IO[str] | None, str | None]:
    """Hold the embedded queue's consumer lock for this process's lifetime (the OS drops it when
    the process ends). (the open lock file, None) when claimed, (None, the holder's description)
    when another process already consumes this queue, (None, None) when there is nothing to lock."""
    path = consumer_lock_path(s)
    if path is None:
        return None, None
    f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        return None, holder
    f.seek(0)
    f.truncate()
    f.write(f"wqbot {role}, pid {os.getpid()}")
    f.flush()
    return f, None
