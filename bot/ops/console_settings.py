"""Settings saved on the console's 企业微信参数 page (/admin/wecom), and how every process follows them.

The page's values live in the store (`store/console.py`): one row per setting, secrets encrypted
with AES-GCM under a key derived from SECRET_KEY, so a copy of the database alone does not give
them away. The environment (and `.env`) wins: a setting it sets is shown as 由环境变量设置 and
cannot be saved here.

Every process reads the merged view through `settings.LiveSettings`: `overlay()` checks the
revision (the newest audit row's id) at most every REFRESH seconds, and re-reads the values when
it moved, so a change reaches every web and worker process within 10 s without a restart. A
changed secret drops that secret's cached client and tokens. What a change starts once (a full
sync when 开启企业微信 is turned on, the held pushes, relinking when SYNC_MATCH_FIELD changes)
is done by the process that saved it (`apply_effects`).
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import fields
from typing import Any

import peewee as pw
from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

import settings as settings_mod
from bot.notify import push
from bot.observability import logs
from bot.queue import defer, enqueue_outbox
from bot.sync import accounts
from bot.wecom import forget_clients
from settings import LiveSettings, Settings, SettingsError
from store.console import ConsoleChange, ConsoleSetting
from store.db import write_transaction

from . import jobs

log = logging.getLogger("wqbot.ops")

REFRESH = 2.0  # seconds between two revision checks in one process (changes arrive within 10 s)

# The page's fields: environment name → (label, secret). Order is the page's.
FIELDS: dict[str, tuple[str, bool]] = {
    "WECOM_CORP_ID": ("企业ID", False),
    "WECOM_AGENT_ID": ("应用ID", False),
    "WECOM_APP_SECRET": ("自建应用密钥", True),
    "WECOM_CONTACTS_SECRET": ("通讯录密钥", True),
    "WECOM_TOKEN": ("接收消息 Token", True),
    "WECOM_AES_KEY": ("接收消息 EncodingAESKey", True),
    "WECOM_CONTACTS_TOKEN": ("通讯录回调 Token", True),
    "WECOM_CONTACTS_AES_KEY": ("通讯录回调 EncodingAESKey", True),
    "SYNC_MATCH_FIELD": ("公有属性", False),
    "WECOM_ENABLED": ("开启企业微信", False),
}
_PARSERS = {f.metadata["env"]: f.metadata["parse"] for f in fields(Settings)}
_ATTR = {f.metadata["env"]: f.name for f in fields(Settings)}
SECRET_NAMES = frozenset(name for name, (_, secret) in FIELDS.items() if secret)


# -- encryption at rest -------------------------------------------------------------------------------
def _key(secret_key: str) -> bytes:
    # HKDF-SHA256: a key of its own for this purpose, never SECRET_KEY itself (it also signs sessions)
    key = HKDF(secret_key.encode(), 32, b"wqbot console settings", SHA256, context=b"AES-256-GCM v1")
    assert isinstance(key, bytes)
    return key


def encrypt(secret_key: str, name: str, value: str) -> str:
    cipher = AES.new(_key(secret_key), AES.MODE_GCM)
    cipher.update(name.encode())  # bound to its row: a ciphertext moved to another setting fails
    ct, tag = cipher.encrypt_and_digest(value.encode())
    return "gcm:" + base64.b64encode(cipher.nonce + tag + ct).decode()


def decrypt(secret_key: str, name: str, stored: str) -> str:
    """Raises ValueError when the value was encrypted under another SECRET_KEY (or altered)."""
    raw = base64.b64decode(stored[4:])
    cipher = AES.new(_key(secret_key), AES.MODE_GCM, nonce=raw[:16])
    cipher.update(name.encode())
    return cipher.decrypt_and_verify(raw[32:], raw[16:32]).decode()


def stored_values(secret_key: str) -> dict[str, str]:
    """The console's values, decrypted. One that no longer decrypts (SECRET_KEY changed) is left
    out, with a warning naming the setting."""
    out: dict[str, str] = {}
    for name, value in ConsoleSetting.select(ConsoleSetting.name, ConsoleSetting.value).tuples():
        if value.startswith("gcm:"):
            try:
                value = decrypt(secret_key, name, value)
            except (ValueError, KeyError):
                log.warning(
                    "a console setting cannot be decrypted (SECRET_KEY changed?): enter it again on /admin/wecom",
                    extra={"setting": name},
                )
                continue
        out[name] = value
    return out


def revision() -> int:
    return int(ConsoleChange.select(pw.fn.MAX(ConsoleChange.id)).scalar() or 0)


# -- the live view ------------------------------------------------------------------------------------
def overlay(live: LiveSettings) -> Settings:
    """The console's values over the environment's, re-read when the revision moved."""
    st = live.__dict__
    merged: Settings = st.get("merged") or live.base
    t = time.monotonic()
    if "merged" in st and t - st.get("checked_at", -1e9) < REFRESH:
        return merged
    st["checked_at"] = t
    try:
        rev = revision()
        if rev == st.get("revision") and "merged" in st:
            return merged
        values = stored_values(live.base.secret_key)
    except Exception as e:  # the store is not open yet (start-up, CLI): the environment's view
        log.debug("console settings not read", extra={"error": type(e).__name__})
        return merged
    try:
        new = settings_mod.load(live.env, live.dotenv, console=values)
    except SettingsError as e:
        log.warning("a console setting is invalid; kept the previous ones", extra={"setting": e.variable})
        st["revision"] = rev
        st.setdefault("merged", merged)
        return merged
    st["merged"], st["revision"] = new, rev
    if new != merged:
        changed(merged, new)
    return new


def changed(old: Settings, new: Settings) -> None:
    """In this process: mask the new secrets in logs, drop clients of secrets no longer in use."""
    logs.add_secrets(new.secret_values)
    if (old.wecom_corp_id, old.wecom_app_secret, old.wecom_contacts_secret) != (
        new.wecom_corp_id,
        new.wecom_app_secret,
        new.wecom_contacts_secret,
    ):
        forget_clients(new)
    log.info("settings changed on the console", extra={"wecom_enabled": new.wecom_enabled})


def install() -> None:
    settings_mod.set_overlay(overlay)


def env_names(s: Settings) -> frozenset[str]:
    return s.from_env if isinstance(s, LiveSettings) else frozenset()  # type: ignore[unreachable]


# -- saving -------------------------------------------------------------------------------------------
def validate(form: dict[str, str], from_env: frozenset[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(values, errors by field) for the page's fields the form carries. A secret left empty keeps
    the stored one; a field the environment sets is ignored."""
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, (label, secret) in FIELDS.items():
        if name in from_env or name not in form:
            continue
        raw = form[name].strip()
        if secret and not raw:
            continue
        try:
            _PARSERS[name](raw)
        except ValueError as e:
            errors[name] = f"{label}格式不正确：{e}"
            continue
        values[name] = raw
    return values, errors


def current_raw(secret_key: str) -> dict[str, str]:
    return stored_values(secret_key)


def save(live: Settings, admin: str, values: dict[str, str], checks: str = "ok") -> list[str]:
    """Store `values` (secrets encrypted), record who changed which fields. Returns the names
    that changed (none: nothing written)."""
    secret_key = live.secret_key
    with write_transaction():
        before = stored_values(secret_key)
        names = [n for n, v in values.items() if before.get(n, None) != v and not (v == "" and n not in before)]
        if not names:
            return []
        for name in names:
            v = values[name]
            if v == "":
                ConsoleSetting.delete().where(ConsoleSetting.name == name).execute()
                continue
            stored = encrypt(secret_key, name, v) if name in settings_mod._SECRET else v
            ConsoleSetting.insert(name=name, value=stored).on_conflict(
                conflict_target=[ConsoleSetting.name], preserve=[ConsoleSetting.value, ConsoleSetting.updated_at]
            ).execute()
        ConsoleChange.create(userid=admin, fields=",".join(names), checks=checks)
    log.info("console settings saved", extra={"admin": admin, "fields": ",".join(names)})
    return names


def apply_effects(old: Settings, new: Settings) -> dict[str, Any]:
    """What a change starts once, in the saving process: the full sync and the held pushes when
    开启企业微信 was turned on, relinking when SYNC_MATCH_FIELD changed."""
    out: dict[str, Any] = {}
    if new.sync_match_field != old.sync_match_field:
        out["relinked"] = accounts.relink(new).written
    if new.wecom_enabled and not old.wecom_enabled:
        with write_transaction():
            defer(jobs.sync_now, full=True)
        enqueue_outbox()
        out["sync_queued"] = True
        out["released"] = push.release_held()
    return out


def history(limit: int = 20) -> list[ConsoleChange]:
    return list(ConsoleChange.select().order_by(ConsoleChange.id.desc()).limit(limit))
