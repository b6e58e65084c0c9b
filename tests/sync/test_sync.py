"""Full reconciliation against a fake WeCom (respx): modes, bulk diff, guards, linking, the run record."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bot.sync import apply_oauth_contact, link_account, resolve_recipients, run_sync
from store.directory import Change, Department, SyncRun, User, UserDepartment
from tests.support import count_queries
from tests.sync.support import FakeWeCom, fast_client


def sync(settings, **kw):
    return run_sync(settings, trigger="test", client=fast_client(settings), **kw)


def feed():
    return [(c.kind, c.ref) for c in Change.select().order_by(Change.seq)]


def with_(settings, **changes):
    return dataclasses.replace(settings, **changes)


# -- list mode ----------------------------------------------------------------------------------------
def test_first_sync_in_list_mode_creates_everything_with_one_user_list_call(settings, fake):
    run = sync(settings)
    assert run.status == "ok" and run.mode == "list"
    assert (run.created, run.updated, run.disabled, run.users_seen) == (5, 0, 0, 5)
    assert run.departments_created == 3 and run.rows_written == 8
    # never per department: one department/list and one user/list(fetch_child=1) on the root
    assert fake.api_calls() == {"department/list": 1, "user/list": 1}
    assert json.loads(run.api_calls) == {"department/list": 1, "user/list": 1}
    u = User.get(User.userid == "u001")
    assert (u.name, u.mobile, u.email, u.position, u.active, u.account) == (
        "员工1",
        "13800000001",
        "u1@example.com",
        "工程师",
        True,
        "u001",
    )
    assert (u.mobile_source, u.main_department) == ("directory", 2)
    assert [(m.department_id, m.order) for m in UserDepartment.select().where(UserDepartment.userid == "u001")] == [
        (2, 0)
    ]
    d = Department.get(Department.id == 3)
    assert (d.name, d.parent_id, d.order, d.active) == ("测试组", 2, 5, True)
    kinds = [k for k, _ in feed()]
    assert kinds.count("department.created") == 3 and kinds.count("user.created") == 5
    assert [c.seq for c in Change.select().order_by(Change.seq)] == list(range(1, 9))


def test_each_top_department_is_listed_once_when_the_root_is_not_visible(settings, store):
    f = FakeWeCom(settings)
    f.dept(2, "华东", 1).dept(5, "华南", 1).dept(6, "广州", 5)
    del f.departments  # rebuild without the root: the app sees two subtrees
    f.departments = {}
    f.dept(2, "华东", 1).dept(5, "华南", 1).dept(6, "广州", 5)
    f.user("a", "甲", (2,)).user("b", "乙", (6,)).user("c", "丙", (2, 6))
    with f.mounted():
        run = sync(settings)
    assert f.calls["user/list"] == 2 and f.calls["department/list"] == 1
    assert run.created == 3 and User.select().count() == 3
    assert sorted(m.department_id for m in UserDepartment.select().where(UserDepartment.userid == "c")) == [2, 6]


def test_a_resync_without_changes_writes_nothing(settings, fake):
    sync(settings)
    before = Change.select().count()
    with count_queries() as q:
        run = sync(settings)
    assert run.status == "ok"
    assert (run.created, run.updated, run.disabled, run.rows_written) == (0, 0, 0, 0)
    assert q.writes() == []  # not one INSERT/UPDATE/DELETE on a directory table
    assert Change.select().count() == before


def test_query_count_does_not_grow_with_the_directory(settings, store):
    def queries(n_users, change):
        from store import db
        from tests.conftest import truncate_all

        truncate_all(db.obj)
        f = FakeWeCom(settings).standard(n_users)
        with f.mounted():
            sync(settings)
            for uid in list(f.users)[:change]:
                f.users[uid]["name"] += "·改"
                f.users[uid]["department"] = [1]
            with count_queries() as q:
                run = sync(settings)
        assert run.updated == change and run.rows_written == change
        return len(q), len(q.writes())

    small, small_writes = queries(10, 5)
    big, big_writes = queries(200, 5)
    assert big == small and big_writes == small_writes  # no per-user queries
    many, _ = queries(400, 300)  # 300 changes = one chunk: still the same statements
    assert many == small


def test_only_changed_users_are_written_and_announced(settings, fake):
    sync(settings)
    seq = Change.select().count()
    fake.users["u001"]["position"] = "架构师"
    fake.users["u002"]["department"] = [2, 3]
    fake.users["u002"]["order"] = [7, 9]
    fake.users["u002"]["is_leader_in_dept"] = [1, 0]
    run = sync(settings)
    assert (run.updated, run.rows_written) == (2, 2)
    new = [(c.kind, c.ref) for c in Change.select().where(Change.seq > seq).order_by(Change.seq)]
    assert sorted(new) == [("user.updated", "u001"), ("user.updated", "u002")]
    assert User.get(User.userid == "u001").position == "架构师"
    assert [
        (m.department_id, m.order, m.is_leader)
        for m in UserDepartment.select().where(UserDepartment.userid == "u002").order_by(UserDepartment.department_id)
    ] == [(2, 7, True), (3, 9, False)]


def test_a_member_who_leaves_is_disabled_and_reactivated_when_they_rejoin(settings, fake):
    sync(settings)
    gone = fake.users.pop("u003")
    run = sync(settings)
    assert run.disabled == 1 and User.get(User.userid == "u003").active is False
    assert feed()[-1] == ("user.deleted", "u003")
    fake.users["u003"] = gone
    run = sync(settings)
    assert run.reactivated == 1 and run.created == 0
    assert User.get(User.userid == "u003").active is True
    last = Change.select().order_by(Change.seq.desc()).first()
    assert (last.kind, last.ref) == ("user.created", "u003") and json.loads(last.data)["reactivated"] is True


def test_a_disabled_member_is_inactive(settings, fake):
    sync(settings)
    fake.users["u000"]["status"] = 2
    run = sync(settings)
    assert run.disabled == 1 and User.get(User.userid == "u000").active is False


def test_a_rename_the_events_missed_is_one_renamed_change(settings, fake):
    sync(settings)
    u = fake.users.pop("u004")
    fake.users["zhao.liu"] = {**u, "userid": "zhao.liu"}
    run = sync(settings)
    assert (run.renamed, run.created, run.disabled) == (1, 0, 0)
    assert User.get_or_none(User.userid == "u004") is None
    assert User.get(User.userid == "zhao.liu").active
    assert feed()[-1] == ("user.renamed", "zhao.liu")
    assert json.loads(Change.select().order_by(Change.seq.desc()).first().data)["old_userid"] == "u004"


def test_same_name_without_a_shared_mobile_or_email_is_not_a_rename(settings, fake):
    sync(settings)
    u = fake.users.pop("u004")
    fake.users["someone.else"] = {**u, "userid": "someone.else", "mobile": "13999999999", "email": ""}
    run = sync(settings)
    assert (run.renamed, run.created, run.disabled) == (0, 1, 1)


# -- guards ---------------------------------------------------------------------------------------------
def test_a_failed_listing_call_disables_no_one_but_applies_updates(settings, store):
    f = FakeWeCom(settings)
    f.departments = {}
    f.dept(2, "华东", 1).dept(5, "华南", 1)
    f.user("a", "甲", (2,)).user("b", "乙", (5,))
    with f.mounted():
        sync(settings)
        f.users["a"]["name"] = "甲二"
        f.fail.add("user/list:5")
        run = sync(settings)
    assert run.status == "partial" and run.disabled == 0 and run.held_disables == 1
    assert "listing call failed" in run.reason
    assert User.get(User.userid == "b").active is True
    assert User.get(User.userid == "a").name == "甲二"
    assert any("user/list department 5" in e for e in json.loads(run.errors))


def test_more_disables_than_the_ratio_are_held_until_forced(settings, fake):
    for i in range(5, 20):
        fake.user(f"u{i:03d}", f"员工{i}", (2,))
    sync(settings)
    for uid in list(fake.users)[:10]:  # 10 of 20 = 50 % > 0.2
        del fake.users[uid]
    fake.users["u019"]["name"] = "改名"
    run = sync(settings)
    assert run.status == "held" and run.disabled == 0 and run.held_disables == 10
    assert "SYNC_MAX_DELETE_RATIO=0.2" in run.reason and "wqbot sync --full --force" in run.reason
    assert User.select().where(User.active).count() == 20
    assert User.get(User.userid == "u019").name == "改名"  # updates still applied
    run = sync(settings, full=True, force=True)
    assert run.status == "ok" and run.disabled == 10 and run.forced
    assert User.select().where(User.active).count() == 10


def test_disables_under_the_ratio_are_applied(settings, fake):
    for i in range(5, 20):
        fake.user(f"u{i:03d}", f"员工{i}", (2,))
    sync(settings)
    for uid in list(fake.users)[:4]:  # 4 of 20 = 20 %, not more than 0.2
        del fake.users[uid]
    run = sync(settings)
    assert run.status == "ok" and run.disabled == 4


def test_a_failed_department_listing_fails_the_run_and_changes_nothing(settings, fake):
    sync(settings)
    fake.fail.add("department/list")
    run = sync(settings)
    assert run.status == "failed" and "could not be read" in run.reason
    assert User.select().where(User.active).count() == 5


# -- list_id mode ---------------------------------------------------------------------------------------
def test_48009_falls_back_to_list_id_and_the_mode_is_remembered(settings, fake):
    fake.refuse_list = True
    run = sync(settings)
    assert run.mode == "list_id" and run.status == "ok" and run.created == 5
    assert any("list_id mode" in w for w in json.loads(run.warnings))
    calls = fake.api_calls()
    assert calls["user/list_id"] == 1 and calls["department/simplelist"] == 1
    assert calls["user/get"] == 5 and calls["department/get"] == 3  # new ones, once each
    u = User.get(User.userid == "u001")
    assert (u.name, u.mobile, u.main_department) == ("员工1", "13800000001", 2)
    assert Department.get(Department.id == 2).name == "研发部"
    fake.calls.clear()
    run = sync(settings)
    assert run.mode == "list_id" and "department/list" not in fake.calls  # remembered
    assert run.rows_written == 0


def test_list_id_membership_comes_from_list_id_and_moved_users_are_fetched(settings, fake):
    fake.refuse_list = True
    sync(settings, full=True)
    fake.calls.clear()
    fake.users["u001"]["department"] = [3]
    fake.users["u001"]["position"] = "测试"
    run = sync(with_(settings, sync_refresh_hours=1000))
    assert run.updated == 1
    assert [m.department_id for m in UserDepartment.select().where(UserDepartment.userid == "u001")] == [3]
    assert User.get(User.userid == "u001").position == "测试"
    # the moved user plus the rotating slice (ceil(5 × 10 / 60000) = 1), never everyone
    assert fake.calls["user/get"] <= 2


def test_list_id_without_budget_applies_membership_and_fetches_details_later(settings, fake):
    fake.refuse_list = True
    s = with_(settings, sync_detail_budget=1, sync_refresh_hours=1000)
    sync(settings, full=True)
    for uid in ("u001", "u002", "u003"):
        fake.users[uid]["department"] = [1]
    run = sync(s)
    assert run.details_fetched == 1 and run.updated == 3
    assert {m.userid for m in UserDepartment.select().where(UserDepartment.department_id == 1)} == {
        "u001",
        "u002",
        "u003",
    }
    pending = User.select().where(User.details_at == 0).count()
    assert pending == 2  # membership applied now, details owed: first in line next run
    sync(s)
    sync(s)
    assert User.select().where(User.details_at == 0).count() == 0


def test_list_id_rotation_refreshes_everyone_within_the_period(settings, store):
    f = FakeWeCom(settings).standard(30)
    f.refuse_list = True
    # 30 users, every 10 minutes, refreshed within 1 hour: 6 runs, ceil(30 × 10 / 60) = 5 user/get per run
    s = with_(settings, sync_refresh_hours=1, sync_interval_minutes=10)
    with f.mounted():
        sync(s, full=True)
        f.user_gets.clear()
        counts = [sync(s).details_fetched for _ in range(6)]
    seen = set(f.user_gets)
    assert counts == [5] * 6
    assert seen == set(f.users)


def test_a_departed_user_listed_again_in_list_id_is_revived_only_with_details(settings, fake):
    fake.refuse_list = True
    sync(settings, full=True)
    gone = fake.users.pop("u002")
    sync(settings)
    assert not User.get(User.userid == "u002").active
    fake.users["u002"] = gone
    run = sync(with_(settings, sync_refresh_hours=1000))
    assert run.reactivated == 1 and User.get(User.userid == "u002").active


def test_a_failed_list_id_page_disables_no_one(settings, fake):
    fake.refuse_list = True
    fake.list_id_page = 2
    sync(settings, full=True)
    fake.fail.add("user/list_id:1")
    run = sync(settings)
    assert run.status == "partial" and run.disabled == 0
    assert User.select().where(User.active).count() == 5


# -- linking ---------------------------------------------------------------------------------------------
def test_hidden_match_field_warns_and_keeps_account_null(settings, fake):
    s = with_(settings, sync_match_field="mobile")
    fake.hide = {"mobile", "email"}
    run = sync(s)
    warn = " ".join(json.loads(run.warnings))
    assert "SYNC_MATCH_FIELD=mobile" in warn and "5 of 5" in warn and "snsapi_privateinfo" in warn
    assert User.select().where(User.account.is_null(False)).count() == 0
    assert User.get(User.userid == "u001").mobile is None


def test_oauth_mobile_links_the_account_and_sync_never_nulls_it(settings, fake):
    s = with_(settings, sync_match_field="mobile")
    fake.hide = {"mobile", "email"}
    sync(s)
    assert apply_oauth_contact("u001", s, mobile="+86 138-0000-0001") == "13800000001"
    u = User.get(User.userid == "u001")
    assert (u.mobile, u.mobile_source, u.account) == ("+86 138-0000-0001", "oauth", "13800000001")
    assert feed()[-1] == ("user.updated", "u001")
    run = sync(s)
    assert run.rows_written == 0
    fake.users["u001"]["name"] = "新名字"
    sync(s)
    u = User.get(User.userid == "u001")
    assert (u.name, u.mobile, u.mobile_source, u.account) == ("新名字", "+86 138-0000-0001", "oauth", "13800000001")


def test_a_directory_mobile_wins_over_oauth(settings, fake):
    s = with_(settings, sync_match_field="mobile")
    sync(s)
    assert apply_oauth_contact("u001", s, mobile="13999999999") == "13800000001"
    assert User.get(User.userid == "u001").mobile_source == "directory"


def test_link_account_by_email(settings, fake):
    s = with_(settings, sync_match_field="email")
    fake.users["u001"]["email"] = "Zhang.San@Example.COM "
    sync(s)
    assert User.get(User.userid == "u001").account == "zhang.san@example.com"
    u = User.get(User.userid == "u002")
    User.update(email="other@example.com").where(User.userid == "u002").execute()
    assert link_account(u, s) == "other@example.com" and u.account == "other@example.com"


def test_resolve_recipients_in_one_query(settings, fake):
    s = with_(settings, sync_match_field="mobile")
    fake.user("twin1", "双1", (2,), mobile="13700000000").user("twin2", "双2", (2,), mobile="+8613700000000")
    sync(s)
    User.update(active=False).where(User.userid == "u004").execute()
    with count_queries() as q:
        found, unknown = resolve_recipients(
            ["u000", "138-0000-0001", "U002", "u004", "nobody", "13700000000", "13800000003"], s
        )
    assert found == {"u000": "u000", "138-0000-0001": "u001", "U002": "u002", "13800000003": "u003"}
    assert unknown == ["u004", "nobody", "13700000000"]  # departed, unknown, ambiguous
    assert len(q) <= 2


# -- the run record, the lease, the schedule ------------------------------------------------------------
def test_each_run_is_recorded(settings, fake):
    run = sync(settings)
    r = SyncRun.get_by_id(run.id).as_dict()
    assert r["status"] == "ok" and r["mode"] == "list" and r["trigger"] == "test"
    assert r["finished_at"] >= r["started_at"] and r["api_calls"] == {"department/list": 1, "user/list": 1}
    assert r["errors"] == [] and r["created"] == 5


def test_sync_is_off_when_wecom_is_disabled(settings, fake):
    from bot.sync.reconcile import SyncDisabled

    with pytest.raises(SyncDisabled):
        sync(with_(settings, wecom_enabled=False))
    assert fake.api_calls() == {}


def test_a_big_directory_is_listed_per_first_level_branch(settings, fake, monkeypatch):
    import bot.sync.fetch as fetch

    monkeypatch.setattr(fetch, "SPLIT_OVER", 2)  # the fake has 3 departments
    fake.dept(4, "销售部", 1).user("both", "两处", (3, 4))
    run = sync(settings)
    assert fake.calls["user/list"] == 3  # the root's own members, then branches 2 and 4
    assert run.created == 6 and run.status == "ok"
    assert sorted(m.department_id for m in UserDepartment.select().where(UserDepartment.userid == "both")) == [3, 4]
    assert fetch.branches(
        {1: {"parent_id": None}, 2: {"parent_id": 1}, 3: {"parent_id": 2}, 5: {"parent_id": 1}}, [1]
    ) == [(1, False), (2, True), (5, True)]
