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


@pytest.mark.parametrize(
    "name",
    [
        "WECOM_CORP_ID",
        "WECOM_AGENT_ID",
        "WECOM_APP_SECRET",
        "WECOM_TOKEN",
        "WECOM_AES_KEY",
        "SECRET_KEY",
        "WEIQIAN_API_TOKEN",
    ],
)
def test_missing_required_names_the_variable(name):
    env = {k: v for k, v in TEST_ENV.items() if k != name}
    with pytest.raises(SettingsError) as e:
        load(env=env, dotenv=None)
    assert e.value.variable == name and name in str(e.value)


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


def test_cli_reports_a_bad_setting_in_one_line_without_traceback(tmp_path):
    env = {k: v for k, v in TEST_ENV.items()}
    env["WECOM_AES_KEY"] = "short"
    env["PATH"] = "/usr/bin:/bin"
    r = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2
    lines = [x for x in r.stderr.strip().splitlines() if x]
    assert len(lines) == 1 and "WECOM_AES_KEY" in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_override_is_what_get_settings_returns():
    s = load(env=dict(TEST_ENV), dotenv=None)
    settings_mod.override(s)
    assert settings_mod.get_settings() is s
