"""`wqbot sim` as a person runs it: the banner names the URL and the settings to point wqbot at,
and the emulator answers there. Plus SimConfig.from_env and the control API's config/reset."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sim import SimConfig
from sim.config import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]


def test_wqbot_sim_prints_how_to_point_wqbot_at_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "PUBLIC_URL"))}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "sim",
            "--port",
            "0",
            "--users",
            "40",
            "--departments",
            "5",
            "--token-expires-in",
            "60",
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "WECOM_CONTACTS_AES_KEY" in line:
                break
        text = "".join(lines)
        url = re.search(r"at (http://127\.0\.0\.1:\d+)", text).group(1)
        for name in ("WECOM_API_BASE", "WECOM_OAUTH_BASE", "WECOM_SSO_BASE"):
            assert f"{name}={url}" in text
        assert f"WECOM_CORP_ID={DEFAULTS['WECOM_CORP_ID']}" in text and "40 members, 5 departments" in text
        r = httpx.get(
            url + "/cgi-bin/gettoken",
            params={"corpid": DEFAULTS["WECOM_CORP_ID"], "corpsecret": DEFAULTS["WECOM_APP_SECRET"]},
            timeout=5,
        )
        assert r.json()["expires_in"] == 60
        assert httpx.get(url + "/", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_from_env_reads_wqbots_settings_and_dotenv(tmp_path):
    (tmp_path / ".env").write_text("WECOM_CORP_ID=wwfromdotenv\nWECOM_APP_SECRET=dotenv-secret\n")
    cfg = SimConfig.from_env(
        env={"WECOM_APP_SECRET": "env-secret", "PUBLIC_URL": "http://127.0.0.1:8123"}, dotenv=tmp_path / ".env", users=5
    )
    assert cfg.corp_id == "wwfromdotenv" and cfg.app_secret == "env-secret" and cfg.users == 5
    assert cfg.contacts_secret == DEFAULTS["WECOM_CONTACTS_SECRET"]
    assert cfg.redirect_domain == "127.0.0.1:8123" and cfg.callback_url == "http://127.0.0.1:8123/wecom/callback"
    assert cfg.sources["WECOM_APP_SECRET"] == "env" and cfg.sources["WECOM_TOKEN"] == "default"
    assert cfg.contacts_callback_url == ""
    from bot.crypto import decode_aes_key

    assert len(decode_aes_key(cfg.aes_key)) == 32 and len(decode_aes_key(cfg.contacts_aes_key)) == 32
    assert "env-secret" not in str(cfg.public())


def test_config_and_reset_through_the_control_api(client, sim):
    r = client.patch("/sim/config", json={"hide_private": True, "token_expires_in": 5})
    assert r.status_code == 200 and r.json()["hide_private"] is True and sim.cfg.token_expires_in == 5
    assert client.patch("/sim/config", json={"corp_id": "x"}).status_code == 400
    assert client.patch("/sim/config", json={"token_expires_in": "5"}).status_code == 400
    before = set(sim.directory.users)
    out = client.post("/sim/reset", json={"users": 25, "departments": 4, "seed": 99}).json()
    assert out["users"] == 25 and out["departments"] == 4 and set(sim.directory.users) != before
    overview = client.get("/sim").json()
    assert overview["directory"]["users"] == 25 and overview["calls"] == 0
    assert client.get("/sim/users", params={"limit": 5}).json()["total"] == 25
    assert client.get("/sim/departments/1").json()["children"]


def test_the_banner_names_every_setting_wqbot_needs_besides_the_emulators():
    from sim.cli import banner

    text = banner(SimConfig(redirect_domain="127.0.0.1:8123"), "http://127.0.0.1:8900", 0.1, 40, 5)
    assert "PUBLIC_URL=http://127.0.0.1:8123" in text and "H5_URL=" in text
    assert "SECRET_KEY, WEIQIAN_API_TOKEN: `wqbot init`" in text
