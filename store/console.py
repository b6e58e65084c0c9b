"""What the admin console stores: the 企业微信参数 saved on /admin/wecom, who changed them, and the
account overrides uploaded as CSV.

`ConsoleSetting` holds one row per setting (by its environment name); secrets are AES-GCM
ciphertext (bot/ops/console_settings.py), never plain text. `ConsoleChange` is the audit trail:
who, when and which settings, never a value. Its highest id is the settings' revision: every
process polls it to pick up a change.
"""

from __future__ import annotations

import peewee as pw

from .models import EpochField, Model, now


class ConsoleSetting(Model):
    name = pw.CharField(primary_key=True, max_length=64)  # the environment name, e.g. WECOM_CORP_ID
    value = pw.TextField()  # plain, or "gcm:" + base64 ciphertext for a secret
    updated_at = EpochField(default=now)


class ConsoleChange(Model):
    id = pw.BigAutoField()
    at = EpochField(default=now, index=True)
    userid = pw.CharField(max_length=100)  # the admin (WeCom userid, or "admin" for the password login)
    fields = pw.TextField()  # the setting names changed, comma-separated; never their values
    checks = pw.TextField(default="")  # "ok", or the checks that failed when saved anyway (仍然保存)


class AccountOverride(Model):
    """`userid,account` rows from a CSV upload: the 微签 account wins over SYNC_MATCH_FIELD."""

    userid = pw.CharField(primary_key=True, max_length=64)
    account = pw.CharField(max_length=255, index=True)
    updated_at = EpochField(default=now)


def _create(db: pw.Database) -> None:
    db.create_tables([ConsoleSetting, ConsoleChange, AccountOverride])


# migration steps (store/migrations.py runs them in id order, each once)
STEPS = [
    ("0801_console_settings", _create),
]
