"""Account linking: each SYNC_MATCH_FIELD form, one account per member, the CSV override, relinking."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from bot.sync import accounts, run_sync
from store.directory import Change, User
from store.login import issue_ticket
from tests.conftest import TEST_ENV
from tests.support import count_queries
from tests.sync.support import fast_client

AUTH = {"Authorization": "Bearer " + TEST_ENV["WEIQIAN_API_TOKEN"]}


def sync(settings):
    return run_sync(settings, trigger="test", client=fast_client(settings))


def with_(settings, **changes):
    return dataclasses.replace(settings, **changes)


def accounts_now() -> dict[str, str | None]:
    return dict(User.select(User.userid, User.account).tuples())


def feed_updates(after: int = 0) -> list[tuple[str, str | None]]:
    return [
        (c.ref, json.loads(c.data)["account"])
        for c in Change.select().where(Change.seq > after, Change.kind == "user.updated").order_by(Change.seq)
    ]


def last_seq() -> int:
    return max([c.seq for c in Change.select(Change.seq)] or [0])


def staff(fake):
    """Members whose alias, biz_mail and 工号 (a custom field) 微签's LDAP shares."""
    for i in range(5):
        u = fake.users[f"u{i:03d}"]
        u["alias"] = f" Staff.{i} "
        u["biz_mail"] = f"Staff{i}@Corp.Example"
        u["extattr"] = {
            "attrs": [
                {"type": 0, "name": "工号", "text": {"value": f" A{i:03d} "}},
                {"type": 1, "name": "主页", "web": {"url": "https://x", "title": "x"}},
            ]
        }
    return fake


@pytest.mark.parametrize(
    "field,expected",
    [
        ("alias", "Staff.2"),  # trimmed, case kept
        ("biz_mail", "staff2@corp.example"),  # lower-cased
        ("extattr:工号", "A002"),  # the text custom field of that name, trimmed
        ("mobile", "13800000002"),
        ("email", "u2@example.com"),
        ("userid", "u002"),
    ],
)
def test_each_match_field_links_by_its_normalised_value(settings, fake, field, expected):
    staff(fake)
    s = with_(settings, sync_match_field=field)
    sync(s)
    u = User.get(User.userid == "u002")
    assert u.account == expected and u.match_key == expected
    # and 微签 may name the member by that key, in any of the forms the field normalises
    from bot.sync import resolve_recipients

    key = {"biz_mail": "STAFF2@corp.example", "alias": " Staff.2", "extattr:工号": "A002 "}.get(field, expected)
    assert resolve_recipients([key], s)[0] == {key: "u002"}


def test_a_member_without_the_custom_field_stays_unlinked_and_is_reported(settings, fake):
    staff(fake)
    fake.users["u004"]["extattr"] = {"attrs": []}
    sync(with_(settings, sync_match_field="extattr:工号"))
    assert accounts_now()["u004"] is None
    r = accounts.report()
    assert r.active == 5 and r.unlinked == [("u004", "员工4")] and r.ambiguous == {}


def test_two_members_never_share_one_account(settings, fake, client, caplog):
    # +86 180-1734-4259 and 18017344259 are one key under mobile: neither member is linked
    s = with_(settings, sync_match_field="mobile")
    fake.user("twin1", "双胞胎一", (2,), mobile="+86 180-1734-4259").user(
        "twin2", "双胞胎二", (2,), mobile="18017344259"
    )
    with caplog.at_level(logging.WARNING, logger="wqbot.sync"):
        run = sync(s)
    now = accounts_now()
    assert now["twin1"] is None and now["twin2"] is None and now["u001"] == "13800000001"
    # the feed never carried the shared key for either of them
    for c in Change.select().where(Change.ref.in_(["twin1", "twin2"])):
        assert json.loads(c.data)["account"] is None
    warned = [r for r in caplog.records if "two members claim one 微签 account" in r.getMessage()]
    assert warned and warned[0].members == ["twin1", "twin2"]
    assert any("twin1 and twin2" in w for w in json.loads(run.warnings))
    r = accounts.report()
    assert r.ambiguous == {"18017344259": [("twin1", "双胞胎一"), ("twin2", "双胞胎二")]}
    assert "ambiguous,twin2,双胞胎二,18017344259" in accounts.report_csv(r)
    # tickets/validate: account null, so 微签 cannot log one in as the other
    t = issue_ticket(settings.secret_key, "twin1", "h5")
    v = client.post("/api/v1/tickets/validate", json={"ticket": t}, headers=AUTH).json()
    assert v["userid"] == "twin1" and v["account"] is None
    listed = {u["userid"]: u["account"] for u in client.get("/api/v1/org/users", headers=AUTH).json()["users"]}
    assert listed["twin1"] is None and listed["twin2"] is None


def test_a_live_event_that_creates_a_twin_unlinks_the_first_member(settings, fake):
    from bot.sync.apply import apply_user, disable_user
    from bot.sync.records import user_from_api

    s = with_(settings, sync_match_field="mobile")
    sync(s)
    before = last_seq()
    twin = {"userid": "twin", "name": "双", "department": [2], "mobile": "+86 138-0000-0001", "status": 1}
    assert apply_user(user_from_api(twin), s, partial=False) == "user.created"
    assert accounts_now()["u001"] is None and accounts_now()["twin"] is None
    assert feed_updates(before) == [("u001", None)]  # the twin's own row is user.created, account null
    # one of them leaves: the other holds the key alone again
    disable_user("twin")
    assert accounts_now()["u001"] == "13800000001"
    assert feed_updates(before)[-1] == ("u001", "13800000001")


def test_changing_the_field_relinks_every_member_once_writing_only_changed_rows(settings, fake):
    staff(fake)
    # u003 and u004 share an alias: under alias neither is linked
    fake.users["u004"]["alias"] = "Staff.3"
    fake.users["u003"]["alias"] = "staff.3 "
    s = with_(settings, sync_match_field="userid")
    sync(s)
    assert accounts.linked_with() == "userid"
    before = last_seq()
    with count_queries() as q:
        r = accounts.relink(with_(settings, sync_match_field="alias"))
    # 5 rows change key; u003/u004 keep distinct keys (alias compares trimmed, case kept)
    assert r.written == 5 and r.accounts_changed == 5
    assert len(q) < 20  # one pass, not a query per member
    assert feed_updates(before) == [
        (f"u{i:03d}", f"Staff.{i}" if i < 3 else "staff.3" if i == 3 else "Staff.3") for i in range(5)
    ]
    # again with the same field: nothing changes, nothing is written
    assert accounts.relink(with_(settings, sync_match_field="alias")).written == 0
    # a field under which only some members change: only those rows are written
    fake_alias = {"u000": "A", "u001": "B"}
    User.update(biz_mail=None).where(User.userid.in_(list(fake_alias))).execute()
    before = last_seq()
    r = accounts.relink(with_(settings, sync_match_field="biz_mail"))
    assert r.written == 5 and dict(feed_updates(before))["u000"] is None
    User.update(biz_mail="staff0@corp.example").where(User.userid == "u000").execute()
    before = last_seq()
    assert accounts.relink(with_(settings, sync_match_field="biz_mail")).written == 1
    assert feed_updates(before) == [("u000", "staff0@corp.example")]


def test_the_next_sync_relinks_when_the_environment_changed_the_field(settings, fake):
    staff(fake)
    sync(settings)
    before = last_seq()
    run = sync(with_(settings, sync_match_field="extattr:工号"))
    assert accounts_now()["u001"] == "A001" and accounts.linked_with() == "extattr:工号"
    assert len(feed_updates(before)) == 5 and run.rows_written == 5


def test_the_csv_override_wins_for_the_members_it_names(settings, fake):
    s = with_(settings, sync_match_field="mobile")
    fake.user("twin1", "双一", (2,), mobile="13700000000").user("twin2", "双二", (2,), mobile="+8613700000000")
    sync(s)
    before = last_seq()
    rows, r = accounts.import_mapping("userid,account\ntwin1,wq-twin1\n\ntwin2, wq-twin2 \nu000,zhang.san\n", s)
    assert rows == 3 and r.accounts_changed == 3
    now = accounts_now()
    assert (now["twin1"], now["twin2"], now["u000"], now["u001"]) == (
        "wq-twin1",
        "wq-twin2",
        "zhang.san",
        "13800000001",
    )
    assert sorted(feed_updates(before)) == [("twin1", "wq-twin1"), ("twin2", "wq-twin2"), ("u000", "zhang.san")]
    assert accounts.report().ambiguous == {}
    # the sync keeps the override (its rows are settled with it)
    fake.users["u000"]["name"] = "改名"
    sync(s)
    assert accounts_now()["u000"] == "zhang.san"
    # an override that names another member's key makes that key ambiguous, like any other claim
    accounts.import_mapping("u002,13800000001\n", s)
    assert accounts_now()["u001"] is None and accounts_now()["u002"] is None
    # an empty account removes the override
    accounts.import_mapping("u002,\n", s)
    assert accounts_now()["u001"] == "13800000001" and accounts_now()["u002"] == "13800000002"


@pytest.mark.parametrize(
    "text,problem",
    [
        ("u1,a,b\n", "line 1: expected two columns userid,account, got 3"),
        (",acc\n", "line 1: the userid must be 1-64 characters"),
        ("userid,account\nu1\n", "line 2: expected two columns"),
    ],
)
def test_a_bad_csv_names_the_line(settings, store, text, problem):
    with pytest.raises(accounts.MappingError) as e:
        accounts.import_mapping(text, settings)
    assert problem in str(e.value)


def test_accounts_cli_imports_and_reports(settings, fake, tmp_path, capsys):
    from bot.cli import main as cli

    sync(settings)
    path = tmp_path / "map.csv"
    path.write_text("userid,account\nu001,wq-one\nu002,wq-one\n", encoding="utf-8")
    assert cli(["accounts", "import", str(path)]) == 0
    assert "2 overrides read" in capsys.readouterr().out
    assert cli(["accounts", "report"]) == 1  # u001 and u002 now claim one account
    out = capsys.readouterr().out
    assert "5 active members: 0 with no account, 1 keys claimed by 2 members" in out and "ambiguous wq-one" in out
    assert cli(["accounts", "report", "--csv"]) == 1
    assert "ambiguous,u001,员工1,wq-one" in capsys.readouterr().out
    path.write_text("u001,wq-one,extra\n", encoding="utf-8")
    assert cli(["accounts", "import", str(path)]) == 2
    assert "line 1: expected two columns" in capsys.readouterr().err
