"""store/statements: the statements built once per shape give what peewee's own queries give, on
both backends (same rows, same values after conversion, same row counts)."""

from __future__ import annotations

from peewee import fn

from store import statements, write_transaction
from store.notifications import NotifyRecipient, NotifyTask, RecipientStatus, TaskState


def _recipients() -> None:
    for n, (key, userid, status, card) in enumerate(
        [
            ("lisi", "lisi", RecipientStatus.SENT, "c1"),
            ("WangWu", "WangWu", RecipientStatus.SENT, None),
            ("zhaoliu", "zhaoliu", RecipientStatus.INVALID, "c1"),
        ]
    ):
        NotifyRecipient.create(
            notification="n1", task_id="T-1", key=key, userid=userid, status=status, card=card, updated_at=1000.5 + n
        )
    NotifyRecipient.create(notification="n2", key="lisi", userid="lisi", status=RecipientStatus.SENT)


def _same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a.__data__ == b.__data__)


def test_select_first_gives_the_row_peewee_gives(store):
    _recipients()
    live = NotifyRecipient.select().where(
        NotifyRecipient.notification == "n1", NotifyRecipient.status != RecipientStatus.INVALID
    )
    cases = [
        ({"userid": "lisi"}, live.where(NotifyRecipient.userid == "lisi")),
        ({"userid": "wangwu"}, live.where(NotifyRecipient.userid == "wangwu")),  # none: another case
        ({"userid": statements.LowerEquals("wangWU")}, live.where(fn.LOWER(NotifyRecipient.userid) == "wangwu")),
        ({"userid": "zhaoliu"}, live.where(NotifyRecipient.userid == "zhaoliu")),  # none: invalid
        ({"card": None}, live.where(NotifyRecipient.card.is_null())),
        ({"card": statements.Not(None)}, live.where(NotifyRecipient.card != None)),  # noqa: E711 (peewee's IS NOT NULL)
    ]
    for extra, query in cases:
        where = {"notification": "n1", "status": statements.Not(RecipientStatus.INVALID), **extra}
        got, expected = statements.select_first(NotifyRecipient, where), query.first()
        assert _same(got, expected), extra
    found = statements.select_first(NotifyRecipient, {"notification": "n1", "userid": "WangWu"})
    assert found is not None and found.key == "WangWu" and found.updated_at == 1001.5 and isinstance(found.id, int)
    assert statements.select_first(NotifyRecipient, {"notification": "n1", "userid": "nobody"}) is None


def _task(task_id: str, **fields) -> None:
    NotifyTask.create(task_id=task_id, kind="approve", title="t", notification="n1", **fields)


def test_update_changes_what_peewee_changes(store):
    _task("T-1")
    _task("T-2")
    _task("T-3", state=TaskState.REJECTED)
    with write_transaction():
        changed = statements.update_returning(
            NotifyTask,
            {"revision": statements.Plus(2), "updated_at": 5.25, "decided_by": None},
            where={"state": TaskState.PENDING},
            returning=("task_id",),
        )
    assert sorted(changed) == [("T-1",), ("T-2",)]
    rows = {t.task_id: (t.revision, t.updated_at, t.decided_by) for t in NotifyTask.select()}
    assert rows["T-1"] == rows["T-2"] == (2, 5.25, None) and rows["T-3"][0] == 0
    with write_transaction():
        assert (
            statements.update_returning(NotifyTask, {"revision": 9}, where={"task_id": "T-9"}, returning=("revision",))
            == []
        )
    with write_transaction():
        expected = NotifyTask.update(revision=NotifyTask.revision + 1).where(NotifyTask.state != "pending").execute()
        changed = statements.update_returning(
            NotifyTask,
            {"revision": statements.Plus(1)},
            where={"state": statements.Not("pending")},
            returning=("revision",),
        )
        assert len(changed) == expected == 1 and changed == [(2,)]
    assert NotifyTask.get(NotifyTask.task_id == "T-3").revision == 2


def test_update_returning_is_the_conditional_update_and_its_new_values(store):
    _task("T-1", revision=3, round=2)
    decide = dict(
        values={"state": TaskState.APPROVED, "revision": statements.Plus(1), "decided_at": 1764000000.125},
        where={"task_id": "T-1", "state": TaskState.PENDING, "round": 2},
        returning=("revision", "decided_at", "state"),
    )
    with write_transaction():
        first = statements.update_returning(
            NotifyTask, decide["values"], where=decide["where"], returning=decide["returning"]
        )
    with write_transaction():  # the condition no longer holds: no row, nothing changed
        second = statements.update_returning(
            NotifyTask, decide["values"], where=decide["where"], returning=decide["returning"]
        )
    assert first == [(4, 1764000000.125, "approved")] and second == []
    task = NotifyTask.get()
    assert (task.revision, task.decided_at, task.state) == (4, 1764000000.125, "approved")
    with write_transaction():
        assert (
            statements.update_returning(NotifyTask, {"revision": 0}, where={"round": 1}, returning=("revision",)) == []
        )
