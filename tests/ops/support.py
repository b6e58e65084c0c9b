"""Helpers for the ops tests (the first day): an empty folder, `wqbot init`, the emulator's values copied in
as an operator copies them from its banner, and the `wqbot` commands run as a person runs them."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from sim import SimConfig

ROOT = Path(__file__).resolve().parents[2]
H5 = "http://127.0.0.1:9/h5/#/pages/login/login_pro"
# what a clean environment would not carry: everything wqbot reads comes from the folder's .env
_OURS = ("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_", "PUBLIC_URL", "H5_URL", "PC_URL", "ADMIN_", "WQBOT_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def wqbot(folder: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=folder,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sim_values(cfg: SimConfig, url: str) -> dict[str, str]:
    """The values `wqbot sim`'s banner tells an operator to copy."""
    return {
        "WECOM_API_BASE": url,
        "WECOM_OAUTH_BASE": url,
        "WECOM_SSO_BASE": url,
        "WECOM_CORP_ID": cfg.corp_id,
        "WECOM_AGENT_ID": str(cfg.agent_id),
        "WECOM_APP_SECRET": cfg.app_secret,
        "WECOM_CONTACTS_SECRET": cfg.contacts_secret,
        "WECOM_TOKEN": cfg.token,
        "WECOM_AES_KEY": cfg.aes_key,
        "WECOM_CONTACTS_TOKEN": cfg.contacts_token,
        "WECOM_CONTACTS_AES_KEY": cfg.contacts_aes_key,
    }


def fill_in(env_file: Path, values: dict[str, str]) -> None:
    """Set NAME=value in the file as an editor would: the NAME= line (or its commented default)
    gets the value; the rest of the file, its comments and its mode stay as they are."""
    text = env_file.read_text(encoding="utf-8")
    for name, value in values.items():
        pattern = re.compile(rf"^(# )?{name}=.*$", re.M)
        if pattern.search(text):
            text = pattern.sub(lambda _m, n=name, v=value: f"{n}={v}", text, count=1)
        else:
            text += f"{name}={value}\n"
    env_file.write_text(text, encoding="utf-8")


def read_env(env_file: Path) -> dict[str, str]:
    out = {}
    for line in env_file.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k] = v
    return out
