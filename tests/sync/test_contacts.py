"""change_contact events through the callback endpoints: every change type, renames, ID-only events
with their queued fetch, a department deleted with its members moved, retries deduped."""

from __future__ import annotations

import json
import time

import pytest

from bot.wecom import reset_clients
from store.directory import Change, Department, User, UserDepartment
from store.models import Outbox
from tests.support import CONTACTS_URL, message
from tests.sync.support import FakeWeCom

_ts = [int(time.time())]


def event(change_type: str, **fields) -> str:
    _ts[0] += 1
    return message(
        FromUserName="sys", CreateTime=_ts[0], MsgType="event", Event="change_contact", ChangeType=change_type, **fields
    )


def feed():
    return [(c.kind, c.ref) for c in Change.select().order_by(Change.seq)]


def deferred():
    return [(o.task, json.loads(o.payload)) for o in Outbox.select().order_by(Outbox.id)]


def mems(userid):
    return sorted(m.department_id for m in UserDepartment.select().where(UserDepartment.userid == userid))


@pytest.fixture
def wecom(settings, store):
    reset_clients()
    f = FakeWeCom(settings)
    f.dept(1, "总公司", None).dept(3, "研发部", 1).dept(4, "华东", 1).dept(7, "测试组", 3).dept(12, "华东销售部", 3)
    with f.mounted():
        yield f
    reset_clients()


FULL_CREATE = dict(
    UserID="zhaoliu",
    Name="赵六",
    Department="1,7",
    MainDepartment=7,
    IsLeaderInDept="0,1",
    Position="测试工程师",
    Mobile="13800001111",
    Email="zl@example.com",
    Status=1,
    Alias="liu.zhao",
)


def test_create_user_applies_at_once_and_queues_the_fetch(client, settings, store, queue):
    client.deliver(event("create_user", **FULL_CREATE), CONTACTS_URL)
    u = User.get(User.userid == "zhaoliu")
    assert (u.name, u.position, u.mobile, u.email, u.main_department, u.active) == (
        "赵六",
        "测试工程师",
        "13800001111",
        "zl@example.com",
        7,
        True,
    )
    assert [
        (m.department_id, m.is_leader)
        for m in UserDepartment.select()
        .where(UserDepartment.userid == "zhaoliu")
        .order_by(UserDepartment.department_id)
    ] == [(1, False), (7, True)]
    assert feed() == [("user.created", "zhaoliu")]
    assert deferred() == [("sync.fetch_user", {"userid": "zhaoliu"})]


def test_an_id_only_create_user_is_completed_by_the_queued_user_get(client, settings, wecom, immediate_queue):
    wecom.user("zhaoliu", "赵六", (1, 7), position="测试工程师", mobile="13800001111")
    client.deliver(event("create_user", UserID="zhaoliu", Department="1,7"), CONTACTS_URL)
    u = User.get(User.userid == "zhaoliu")
    assert (u.name, u.position, u.mobile) == ("赵六", "测试工程师", "13800001111")
    assert feed() == [("user.created", "zhaoliu"), ("user.updated", "zhaoliu")]
    assert wecom.calls["user/get"] == 1
    assert Outbox.select().count() == 0  # the task finished and removed its row


def test_a_fetch_that_agrees_with_the_event_writes_nothing(client, settings, wecom, immediate_queue):
    wecom.user(
        "zhaoliu",
        "赵六",
        (1, 7),
        order=[0, 0],
        is_leader_in_dept=[0, 1],
        main_department=7,
        position="测试工程师",
        mobile="13800001111",
        email="zl@example.com",
        alias="liu.zhao",
    )
    client.deliver(event("create_user", **FULL_CREATE), CONTACTS_URL)
    assert feed() == [("user.created", "zhaoliu")]


def test_update_user_changes_only_what_it_carries(client, settings, store, queue):
    client.deliver(event("create_user", **FULL_CREATE), CONTACTS_URL)
    client.deliver(event("update_user", UserID="zhaoliu", Position="测试经理"), CONTACTS_URL)
    u = User.get(User.userid == "zhaoliu")
    assert (u.position, u.name, u.mobile) == ("测试经理", "赵六", "13800001111")
    assert feed()[-1] == ("user.updated", "zhaoliu")
    n = len(feed())
    client.deliver(event("update_user", UserID="zhaoliu", Position="测试经理"), CONTACTS_URL)  # nothing new
    assert len(feed()) == n


def test_update_for_an_unknown_user_creates_it_and_fetches(client, settings, wecom, immediate_queue):
    wecom.user("wangwu", "王五", (4,), position="销售")
    client.deliver(event("update_user", UserID="wangwu", Department="4"), CONTACTS_URL)
    u = User.get(User.userid == "wangwu")
    assert (u.name, u.position, u.active) == ("王五", "销售", True)
    assert mems("wangwu") == [4]
    assert wecom.calls["user/get"] == 1


def test_a_rename_is_one_user_renamed(client, settings, store, queue):
    client.deliver(
        event("create_user", UserID="8a1f3c2b", Name="赵六", Department="1,7", Mobile="13800001111"), CONTACTS_URL
    )
    client.deliver(event("update_user", UserID="8a1f3c2b", NewUserID="zhaoliu", Department="7"), CONTACTS_URL)
    assert User.get_or_none(User.userid == "8a1f3c2b") is None
    u = User.get(User.userid == "zhaoliu")
    assert (u.name, u.mobile, u.account) == ("赵六", "13800001111", "zhaoliu")
    assert mems("zhaoliu") == [7] and mems("8a1f3c2b") == []
    assert feed() == [("user.created", "8a1f3c2b"), ("user.renamed", "zhaoliu")]
    data = json.loads(Change.select().order_by(Change.seq.desc()).first().data)
    assert data["old_userid"] == "8a1f3c2b" and data["userid"] == "zhaoliu"
    assert deferred()[-1] == ("sync.fetch_user", {"userid": "zhaoliu"})


def test_a_rename_delivered_again_changes_nothing(client, settings, store, queue):
    client.deliver(event("create_user", UserID="8a1f3c2b", Name="赵六", Department="7"), CONTACTS_URL)
    rename = event("update_user", UserID="8a1f3c2b", NewUserID="zhaoliu", Department="7")
    client.deliver(rename, CONTACTS_URL)
    client.deliver(rename, CONTACTS_URL)  # WeCom's retry: the same plaintext, deduped by the endpoint
    _ts[0] += 5
    client.deliver(rename.replace(str(_ts[0] - 5), str(_ts[0])), CONTACTS_URL)  # a distinct delivery of the same change
    assert feed() == [("user.created", "8a1f3c2b"), ("user.renamed", "zhaoliu")]
    assert User.select().count() == 1


def test_a_rename_after_reconciliation_saw_the_new_id_merges_the_twins(client, settings, store, queue):
    client.deliver(event("create_user", UserID="8a1f3c2b", Name="赵六", Department="7"), CONTACTS_URL)
    client.deliver(event("create_user", UserID="zhaoliu", Name="赵六", Department="7"), CONTACTS_URL)
    client.deliver(event("update_user", UserID="8a1f3c2b", NewUserID="zhaoliu"), CONTACTS_URL)
    assert [u.userid for u in User.select()] == ["zhaoliu"]
    assert feed()[-1] == ("user.renamed", "zhaoliu")


def test_delete_user_is_a_soft_delete_and_create_revives(client, settings, store, queue):
    client.deliver(event("create_user", **FULL_CREATE), CONTACTS_URL)
    client.deliver(event("delete_user", UserID="zhaoliu"), CONTACTS_URL)
    assert User.get(User.userid == "zhaoliu").active is False
    client.deliver(event("delete_user", UserID="zhaoliu"), CONTACTS_URL)
    assert feed() == [("user.created", "zhaoliu"), ("user.deleted", "zhaoliu")]
    # an update that arrives late (events are not ordered) does not revive a departed member
    client.deliver(event("update_user", UserID="zhaoliu", Position="x"), CONTACTS_URL)
    assert User.get(User.userid == "zhaoliu").active is False
    client.deliver(event("create_user", UserID="zhaoliu", Department="7"), CONTACTS_URL)
    assert User.get(User.userid == "zhaoliu").active is True
    last = Change.select().order_by(Change.seq.desc()).first()
    assert (last.kind, json.loads(last.data)["reactivated"]) == ("user.created", True)


def test_party_events(client, settings, wecom, queue):
    client.deliver(event("create_party", Id=12, Name="华东销售部", ParentId="3", Order=100), CONTACTS_URL)
    d = Department.get(Department.id == 12)
    assert (d.name, d.parent_id, d.order, d.active) == ("华东销售部", 3, 100, True)
    client.deliver(event("update_party", Id=12, ParentId="4"), CONTACTS_URL)  # ID-only: the parent changed
    d = Department.get(Department.id == 12)
    assert (d.name, d.parent_id) == ("华东销售部", 4)
    client.deliver(event("update_party", Id=12, Name="华东大区"), CONTACTS_URL)
    assert Department.get(Department.id == 12).name == "华东大区"
    client.deliver(event("delete_party", Id=12), CONTACTS_URL)
    assert Department.get(Department.id == 12).active is False
    assert feed() == [
        ("department.created", "12"),
        ("department.updated", "12"),
        ("department.updated", "12"),
        ("department.deleted", "12"),
    ]
    assert [t for t, _ in deferred()] == ["sync.fetch_department"] * 3


def test_id_only_create_party_gets_its_name_from_department_get(client, settings, wecom, immediate_queue):
    client.deliver(event("create_party", Id=12, ParentId="3"), CONTACTS_URL)
    d = Department.get(Department.id == 12)
    assert (d.name, d.parent_id) == ("华东销售部", 3)
    assert feed() == [("department.created", "12"), ("department.updated", "12")]


def test_a_department_deleted_after_its_members_moved(client, settings, store, queue):
    client.deliver(event("create_party", Id=12, Name="华东销售部", ParentId="3"), CONTACTS_URL)
    for uid in ("a", "b"):
        client.deliver(event("create_user", UserID=uid, Name=uid, Department="12", MainDepartment=12), CONTACTS_URL)
    for uid in ("a", "b"):
        client.deliver(event("update_user", UserID=uid, Department="4"), CONTACTS_URL)
    queue.storage.flush_all()
    Outbox.delete().execute()
    client.deliver(event("delete_party", Id=12), CONTACTS_URL)
    assert mems("a") == [4] and mems("b") == [4]
    assert User.get(User.userid == "a").main_department == 4
    assert feed()[-1] == ("department.deleted", "12")
    assert deferred() == []  # nobody left in it: nothing to fetch


def test_a_department_deleted_before_the_moves_arrive(client, settings, wecom, immediate_queue):
    wecom.dept(13, "临时", 3).user("a", "甲", (13,)).user("b", "乙", (13, 3))
    client.deliver(event("create_party", Id=13, Name="临时", ParentId="3"), CONTACTS_URL)
    for uid in ("a", "b"):
        client.deliver(event("create_user", UserID=uid, Name=uid, Department="13"), CONTACTS_URL)
    assert mems("a") == [13] and mems("b") == [3, 13]
    # WeCom moved both and deleted 13; the delete_party event comes before the update_user ones
    wecom.user("a", "甲", (4,)).user("b", "乙", (4, 3))
    del wecom.departments[13]
    wecom.calls.clear()
    client.deliver(event("delete_party", Id=13), CONTACTS_URL)
    assert wecom.calls["user/get"] == 2  # the members still listed in 13 were fetched
    assert mems("a") == [4] and mems("b") == [3, 4]
    assert Department.get(Department.id == 13).active is False
    assert UserDepartment.select().where(UserDepartment.department_id == 13).count() == 0


def test_update_tag_is_ignored(client, settings, store, queue):
    client.deliver(event("update_tag", TagId=5, AddUserItems="wangwu,zhaoliu", DelPartyItems="9"), CONTACTS_URL)
    assert feed() == [] and deferred() == []


def test_change_contact_on_the_app_url_is_applied_too(client, settings, store, queue):
    client.deliver(event("create_user", **FULL_CREATE))
    assert feed() == [("user.created", "zhaoliu")]


def test_a_retried_delivery_is_applied_once(client, settings, store, queue):
    xml = event("create_party", Id=20, Name="新部门", ParentId="1")
    for _ in range(3):  # WeCom re-encrypts each retry; the plaintext is the same
        client.deliver(xml, CONTACTS_URL)
    assert feed() == [("department.created", "20")]
    assert len(deferred()) == 1


def test_events_without_ids_are_acknowledged_and_ignored(client, settings, store, queue):
    client.deliver(event("create_user", Name="无名"), CONTACTS_URL)
    client.deliver(event("delete_party", Id="abc"), CONTACTS_URL)
    assert feed() == [] and User.select().count() == 0


def test_the_fetch_of_a_member_who_is_gone_changes_nothing(client, settings, wecom, immediate_queue):
    client.deliver(event("create_user", UserID="ghost", Name="幽灵", Department="1"), CONTACTS_URL)
    assert User.get(User.userid == "ghost").active  # user/get said 60111: left for reconciliation
    assert feed() == [("user.created", "ghost")]
