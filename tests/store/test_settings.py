import subprocess
import sys

import pytest

import settings as settings_mod
from settings import SettingsError, load
from tests.conftest import TEST_ENV


def test_defaults_and_derived():
    s = load(env=dict(TEST_ENV), dotenv=None)
    assert s.wecom_agent_id == 1000002 and s.sync_interval_minutes == 10
    assert s.sync_max_delete_ratio == 0.2 and s.wecom_oauth_scope == "snsapi_base"
    assert s.contacts_callback_enabled


def test_missing_secret_key_names_the_variable():
    env = {k: v for k, v in TEST_ENV.items() if k != "SECRET_KEY"}
    with pytest.raises(SettingsError) as e:
        load(env=env, dotenv=None)
    assert e.value.variable == "SECRET_KEY" and "SECRET_KEY" in str(e.value)


@pytest.mark.parametrize("name", ["WECOM_CORP_ID", "WECOM_AGENT_ID", "WECOM_APP_SECRET"])
def test_without_wecom_values_settings_load_in_setup_mode(name):
    # wqbot serve starts with only SECRET_KEY and an admin login: WeCom is filled in on /admin/wecom
    env = {k: v for k, v in TEST_ENV.items() if k != name}
    s = load(env=env, dotenv=None)
    assert not s.wecom_configured and not s.wecom_enabled
    assert load(env=dict(TEST_ENV), dotenv=None).wecom_configured


def test_console_values_fill_in_and_the_environment_wins():
    env = {k: v for k, v in TEST_ENV.items() if k not in ("WECOM_AGENT_ID", "SYNC_MATCH_FIELD")}
    s = load(env=env, dotenv=None, console={"WECOM_AGENT_ID": "1000009", "WECOM_CORP_ID": "wwconsole"})
    assert s.wecom_agent_id == 1000009 and s.wecom_corp_id == TEST_ENV["WECOM_CORP_ID"]


@pytest.mark.parametrize(
    "value,parsed",
    [
        ("alias", "alias"),
        ("BIZ_MAIL", "biz_mail"),
        ("extattr:工号", "extattr:工号"),
        (" extattr: EmpNo ", "extattr:EmpNo"),
    ],
)
def test_sync_match_field_forms(value, parsed):
    assert load(env={**TEST_ENV, "SYNC_MATCH_FIELD": value}, dotenv=None).sync_match_field == parsed


@pytest.mark.parametrize("value", ["extattr:", "phone", "extattr"])
def test_sync_match_field_refused_names_the_forms(value):
    with pytest.raises(SettingsError) as e:
        load(env={**TEST_ENV, "SYNC_MATCH_FIELD": value}, dotenv=None)
    assert e.value.variable == "SYNC_MATCH_FIELD" and "extattr:<custom field name>" in str(e.value)


@pytest.mark.parametrize(
    "name,value",
    [
        ("WECOM_AES_KEY", "tooshort"),
        ("WECOM_AES_KEY", "!" * 43),
        ("WECOM_AGENT_ID", "abc"),
        ("SYNC_MAX_DELETE_RATIO", "1.5"),
        ("SYNC_MATCH_FIELD", "phone"),
        ("DATABASE_URL", "mysql://x"),
        ("QUEUE_URL", "amqp://x"),
        ("PUBLIC_URL", "example.com"),
        ("WECOM_ENABLED", "maybe"),
        ("WECOM_TOKEN", "has spaces"),
        ("WECOM_OAUTH_SCOPE", "snsapi_userinfo"),
    ],
)
def test_malformed_value_names_the_variable(name, value):
    with pytest.raises(SettingsError) as e:
        load(env={**TEST_ENV, name: value}, dotenv=None)
    assert e.value.variable == name


def test_webhook_url_needs_its_secret():
    with pytest.raises(SettingsError) as e:
        load(env={**TEST_ENV, "WEIQIAN_WEBHOOK_URL": "https://x.example.com/hook"}, dotenv=None)
    assert e.value.variable == "WEIQIAN_WEBHOOK_SECRET"


def test_dotenv_is_read_and_environment_wins(tmp_path):
    f = tmp_path / ".env"
    f.write_text("# comment\nexport SYNC_INTERVAL_MINUTES=5\nPUBLIC_URL='https://a.example.com/'\n", encoding="utf-8")
    s = load(env={**{k: v for k, v in TEST_ENV.items() if k != "PUBLIC_URL"}}, dotenv=f)
    assert s.sync_interval_minutes == 5 and s.public_url == "https://a.example.com"
    s = load(env={**TEST_ENV, "SYNC_INTERVAL_MINUTES": "7"}, dotenv=f)
    assert s.sync_interval_minutes == 7


def test_repr_masks_secrets():
    s = load(env=dict(TEST_ENV), dotenv=None)
    text = repr(s)
    for secret in s.secret_values:
        assert secret not in text
    assert TEST_ENV["WECOM_APP_SECRET"] in s.secret_values


def test_cli_reports_every_bad_setting_in_one_run_without_traceback(tmp_path):
    """One run lists every missing or malformed setting, each with where its value comes from:
    not one per run. WeCom's own settings may be missing at start-up (setup mode: the console's
    企业微信参数 page fills them), but a malformed one is still refused."""
    env = {"PATH": "/usr/bin:/bin", "WECOM_AES_KEY": "short", "WECOM_ENABLED": "maybe", "WECOM_AGENT_ID": "abc"}
    r = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == "wqbot: 4 settings to fix (environment or .env):", r.stderr
    for name in ["SECRET_KEY", "WECOM_AES_KEY", "WECOM_ENABLED", "WECOM_AGENT_ID"]:
        assert any(line.strip().startswith(f"{name}: ") for line in lines), (name, r.stderr)
    assert "AgentId" in r.stderr and "wqbot init" in r.stderr  # the fixes say where
    assert "must be exactly 43 characters" in r.stderr and "must be true or false" in r.stderr


def test_settings_error_lists_every_problem_with_its_fix():
    env = {k: v for k, v in TEST_ENV.items() if k not in ("WECOM_CORP_ID", "SECRET_KEY")}
    with pytest.raises(SettingsError) as e:
        load(env={**env, "WECOM_AGENT_ID": "abc", "WECOM_AES_KEY": "short"}, dotenv=None)
    found = {v: fix for v, _, fix in e.value.problems}
    assert set(found) == {"SECRET_KEY", "WECOM_AGENT_ID", "WECOM_AES_KEY"}  # a missing corp id is setup mode
    assert "AgentId" in found["WECOM_AGENT_ID"] and "设置API接收" in found["WECOM_AES_KEY"]


def test_override_is_what_get_settings_returns():
    s = load(env=dict(TEST_ENV), dotenv=None)
    settings_mod.override(s)
    assert settings_mod.get_settings() is s
