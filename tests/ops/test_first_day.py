"""An operator's first day, as a person goes through it: an empty folder, `wqbot init`, the
emulator's values copied in, `wqbot serve`, then `wqbot doctor` passing in one run. Plus what
`init` promises (secrets generated, mode 0600, no overwrite without --force, .env.example in step)
and what `serve` and `worker` say when they start."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import settings as settings_mod
from bot.ops.envfile import render
from sim import SimConfig, create_app
from sim.server import ServerThread
from tests.ops.support import H5, ROOT, clean_env, fill_in, free_port, read_env, sim_values, wqbot
from tests.support import wait_until_serving


def test_env_example_is_what_init_writes_without_the_generated_secrets():
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert example == render(None), (
        "regenerate: python -c \"from bot.ops.envfile import render; print(render(None), end='')\" > .env.example"
    )
    for f in fields(settings_mod.Settings):  # every setting is in it, to fill in or as a commented default
        assert f"\n{f.metadata['env']}=" in example or f"\n# {f.metadata['env']}=" in example, f.metadata["env"]
    assert "\nSECRET_KEY=\n" in example and "\nWEIQIAN_API_TOKEN=\n" in example


def test_init_generates_secrets_writes_0600_and_keeps_an_existing_file(tmp_path):
    r = wqbot(tmp_path, "init")
    assert r.returncode == 0, r.stderr
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = read_env(env_file)
    assert len(values["SECRET_KEY"]) >= 40 and len(values["WEIQIAN_API_TOKEN"]) >= 40
    assert values["SECRET_KEY"] != values["WEIQIAN_API_TOKEN"]
    assert "我的企业 → 企业信息" in env_file.read_text(encoding="utf-8")  # grouped by where values come from
    before = env_file.read_text(encoding="utf-8")
    r = wqbot(tmp_path, "init")
    assert r.returncode == 1 and "--force" in r.stderr and env_file.read_text(encoding="utf-8") == before
    env_file.chmod(0o644)
    assert wqbot(tmp_path, "init", "--force").returncode == 0
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert read_env(env_file)["SECRET_KEY"] != values["SECRET_KEY"]


def test_version_and_log_format_after_the_command(tmp_path):
    r = wqbot(tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.startswith("wqbot ")
    r = wqbot(tmp_path, "doctor", "--log-format", "text")  # accepted after the command
    assert "unrecognized arguments" not in r.stderr and r.returncode == 1
    # one round names everything: SECRET_KEY, and WeCom's settings (the console cannot hold them
    # without SECRET_KEY, whose key seals them)
    assert "✗ settings: SECRET_KEY: is required" in r.stdout, r.stdout
    for name in ("WECOM_CORP_ID", "WECOM_AGENT_ID", "WECOM_APP_SECRET", "WECOM_TOKEN", "WECOM_AES_KEY"):
        assert f"✗ settings: {name}: is not set" in r.stdout, (name, r.stdout)


def test_from_an_empty_folder_init_then_doctor_passes_in_one_run(tmp_path):
    assert wqbot(tmp_path, "init").returncode == 0
    env_file = tmp_path / ".env"
    port = free_port()
    cfg = SimConfig(users=40, departments=5, seed=3, redirect_domain=f"127.0.0.1:{port}")
    with ServerThread(create_app(cfg)) as url:
        fill_in(env_file, {**sim_values(cfg, url), "PUBLIC_URL": f"http://127.0.0.1:{port}", "H5_URL": H5})
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        log_path = tmp_path / "serve.log"
        with open(log_path, "w") as log:
            serve = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "--log-format", "text", "serve", "--port", str(port)],
                cwd=tmp_path,
                env=clean_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_serving(f"http://127.0.0.1:{port}/healthz", serve, log_path)
            r = wqbot(tmp_path, "doctor")
            assert r.returncode == 0, r.stdout + r.stderr
            assert "✗" not in r.stdout and r.stdout.strip().splitlines()[-1].startswith("all ")
            for name in ("gettoken (WECOM_APP_SECRET)", "gettoken (WECOM_CONTACTS_SECRET)", "可信域名", "directory"):
                assert f"✓ {name}" in r.stdout, (name, r.stdout)
            assert "✓ callback:" in r.stdout and "✓ contacts callback:" in r.stdout and "✓ .env:" in r.stdout
            assert "! PC_URL: empty" in r.stdout  # said, not failed

            # a worker beside a serve that runs the embedded queue's consumer says so
            worker = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "--log-format", "text", "worker"],
                cwd=tmp_path,
                env=clean_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                seen = []
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    line = worker.stdout.readline()
                    if not line:
                        break
                    seen.append(line)
                    if "already consumed by wqbot serve" in line:
                        break
                assert any("already consumed by wqbot serve, pid" in x for x in seen), "".join(seen)
            finally:
                worker.terminate()
                worker.wait(10)
        finally:
            serve.terminate()
            serve.wait(15)
    text = log_path.read_text(encoding="utf-8")
    check = next(line for line in text.splitlines() if "self-check (serve" in line)
    assert "self-check (serve, sqlite, embedded queue): ok" in check, text
    assert text.index("self-check (serve") < text.index("wqbot: serving on"), text


def test_serving_on_is_said_only_after_the_bind_succeeded(tmp_path):
    values = {
        "WECOM_CORP_ID": "wwfirstday01",
        "WECOM_AGENT_ID": "1000002",
        "WECOM_APP_SECRET": "s" * 20,
        "WECOM_TOKEN": "Token1",
        "WECOM_AES_KEY": SimConfig().aes_key,
        "SECRET_KEY": "k" * 32,
        "WEIQIAN_API_TOKEN": "t" * 32,
        "WECOM_ENABLED": "false",  # no WeCom pass: nothing to wait for
    }
    Path(tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = wqbot(tmp_path, "serve", "--port", str(port), timeout=60)
    assert r.returncode == 2 and "cannot listen on 127.0.0.1:" in r.stderr and "another --port" in r.stderr
    assert "serving on" not in r.stderr


def test_doctor_and_sync_print_no_secret_and_mask_no_ordinary_word(tmp_path):
    """Every secret configured, doctor and a full sync run (and the sync again at DEBUG, where
    httpx logs each request): no secret value appears anywhere, and the only **** are values
    written as credentials (`corpsecret=****`, `access_token=****`), never a word of a message."""
    assert wqbot(tmp_path, "init").returncode == 0
    port = free_port()
    cfg = SimConfig(users=40, departments=5, seed=3, redirect_domain=f"127.0.0.1:{port}")
    with ServerThread(create_app(cfg)) as url:
        fill_in(
            tmp_path / ".env",
            {
                **sim_values(cfg, url),
                "PUBLIC_URL": f"http://127.0.0.1:{port}",
                "H5_URL": H5,
                "WEIQIAN_WEBHOOK_URL": "http://127.0.0.1:9/hook",
                "WEIQIAN_WEBHOOK_SECRET": "webhook-secret-value-0123456789",
                "ADMIN_PASSWORD": "admin-password-value-9876543210",
                "WQBOT_LOG_FORMAT": "text",
            },
        )
        secrets = [
            v
            for k, v in read_env(tmp_path / ".env").items()
            if k in settings_mod._SECRET and v  # every configured secret value
        ]
        assert len(secrets) == 10
        doctor = wqbot(tmp_path, "doctor")  # nothing serves PUBLIC_URL: the callback lines fail, and say so
        sync = wqbot(tmp_path, "sync", "--full")
        debug = wqbot(tmp_path, "sync", "--full", WQBOT_LOG_LEVEL="DEBUG")
    assert sync.returncode == 0, sync.stdout + sync.stderr
    quiet = doctor.stdout + doctor.stderr + sync.stdout + sync.stderr
    assert "✗ callback:" in doctor.stdout and "✓ gettoken (WECOM_CONTACTS_SECRET)" in doctor.stdout
    for s in secrets:
        assert s not in quiet + debug.stdout + debug.stderr, "a secret was printed"
    assert "****" not in quiet, [x for x in quiet.splitlines() if "****" in x]
    masked = [x for x in debug.stderr.splitlines() if "****" in x]
    assert masked, "at DEBUG httpx logs each request, with its credentials masked"
    for line in masked:
        for m in re.finditer(r"(\S{0,20})\*\*\*\*", line):
            assert m.group(1).endswith(("corpsecret=", "access_token=")), line


def test_doctor_flags_an_env_file_others_can_read(tmp_path):
    from bot.ops.doctor import Doctor

    env_file = tmp_path / ".env"
    env_file.write_text("SECRET_KEY=x\n")
    for mode, ok, who in ((0o600, True, ""), (0o640, False, "its group"), (0o644, False, "others")):
        env_file.chmod(mode)
        d = Doctor()
        d.check_env_file(env_file)
        (c,) = d.checks
        assert c.ok is ok, (mode, c.line())
        if not ok:
            assert f"readable by {who} (mode {mode:04o})" in c.detail and c.fix.startswith(f"chmod 600 {env_file}")
