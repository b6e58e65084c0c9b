"""/api/v1/org/*: departments, users with cursor paging, the change feed; bearer auth; clear 4xx."""

from __future__ import annotations

import pytest

from store import db
from store.directory import Department, User, UserDepartment, record_change

AUTH = {"authorization": "Bearer weiqian-api-token-DO-NOT-LOG-33aa"}


@pytest.fixture
def directory(store):
    with db.atomic():
        Department.insert_many(
            [
                {"id": 1, "name": "总公司", "parent_id": None, "order": 0},
                {"id": 2, "name": "研发部", "parent_id": 1, "order": 10},
                {"id": 3, "name": "已撤销", "parent_id": 1, "order": 0, "active": False},
            ]
        ).execute()
        for i in range(25):
            User.create(
                userid=f"u{i:02d}",
                name=f"员工{i}",
                mobile=f"1380000{i:04d}" if i % 2 else None,
                active=i != 7,
                account=f"u{i:02d}",
                main_department=2 if i % 3 == 0 else 1,
            )
            UserDepartment.create(userid=f"u{i:02d}", department_id=1)
            if i % 3 == 0:
                UserDepartment.create(userid=f"u{i:02d}", department_id=2)


@pytest.mark.parametrize("path", ["/api/v1/org/departments", "/api/v1/org/users", "/api/v1/org/changes"])
def test_bearer_token_is_required(client, path):
    assert client.get(path).status_code == 401
    r = client.get(path, headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_departments(client, directory):
    r = client.get("/api/v1/org/departments", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["departments"] == [
        {"id": 1, "name": "总公司", "parent_id": None, "order": 0, "active": True},
        {"id": 2, "name": "研发部", "parent_id": 1, "order": 10, "active": True},
        {"id": 3, "name": "已撤销", "parent_id": 1, "order": 0, "active": False},
    ]


def test_users_are_paged_with_a_cursor(client, directory):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        r = client.get("/api/v1/org/users", params=params, headers=AUTH)
        assert r.status_code == 200
        body = r.json()
        seen += body["users"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and [u["userid"] for u in seen] == [f"u{i:02d}" for i in range(25)]
    u3 = seen[3]
    assert u3 == {
        "userid": "u03",
        "name": "员工3",
        "departments": [2, 1],
        "mobile": "13800000003",
        "email": None,
        "position": None,
        "active": True,
        "account": "u03",
    }  # main department first
    assert seen[7]["active"] is False


def test_users_default_page_and_exact_last_page(client, directory):
    body = client.get("/api/v1/org/users", headers=AUTH).json()
    assert len(body["users"]) == 25 and body["next_cursor"] is None
    body = client.get("/api/v1/org/users", params={"limit": 25}, headers=AUTH).json()
    assert len(body["users"]) == 25 and body["next_cursor"] is None


@pytest.mark.parametrize(
    "params, code",
    [
        ({"limit": "0"}, "invalid_parameter"),
        ({"limit": "1001"}, "invalid_parameter"),
        ({"limit": "ten"}, "invalid_parameter"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"cursor": "e30"}, "invalid_cursor"),
    ],
)
def test_bad_user_parameters_are_400(client, directory, params, code):
    r = client.get("/api/v1/org/users", params=params, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"] == code and r.json()["message"]


def test_the_change_feed_pages_with_after_and_next(client, store):
    with db.atomic():
        for i in range(5):
            record_change("user.updated", f"u{i}", {"userid": f"u{i}"})
        record_change("department.created", 9, {"id": 9})
    r = client.get("/api/v1/org/changes", params={"after": 0, "limit": 4}, headers=AUTH)
    body = r.json()
    assert [c["seq"] for c in body["changes"]] == [1, 2, 3, 4] and body["next"] == 4
    c = body["changes"][0]
    assert (c["kind"], c["id"], c["data"]) == ("user.updated", "u0", {"userid": "u0"})
    assert c["at"].endswith("Z")
    body = client.get("/api/v1/org/changes", params={"after": 4}, headers=AUTH).json()
    assert [(c["seq"], c["kind"], c["id"]) for c in body["changes"]] == [
        (5, "user.updated", "u4"),
        (6, "department.created", 9),
    ]
    assert body["next"] == 6
    body = client.get("/api/v1/org/changes", params={"after": 6}, headers=AUTH).json()
    assert body == {"changes": [], "next": 6}


@pytest.mark.parametrize("params", [{"after": "-1"}, {"after": "x"}, {"limit": "0"}, {"limit": "5000"}])
def test_bad_feed_parameters_are_400(client, store, params):
    r = client.get("/api/v1/org/changes", params=params, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"] == "invalid_parameter"


def test_record_change_outside_a_transaction_is_refused(store):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        record_change("user.updated", "x", {})
