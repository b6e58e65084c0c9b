"""Chat tables: when each employee was last greeted on opening the app.

"At most once a day" is one conditional upsert: the row for a userid is inserted, or its day
moved forward, only when it does not already hold today. Of two enter_agent events racing for
the same person, the database lets exactly one change the row, and only that one greets.
"""

from __future__ import annotations

import peewee as pw

from .models import EpochField, Model, now


class Greeting(Model):
    userid = pw.CharField(primary_key=True, max_length=64)
    day = pw.CharField(max_length=10)  # YYYY-MM-DD in China Standard Time
    greeted_at = EpochField(default=now)

    class Meta:
        table_name = "chat_greeting"


def claim_greeting(userid: str, day: str) -> bool:
    """True if `userid` was not greeted on `day` yet, and marks them greeted; False otherwise."""
    q = Greeting.insert(userid=userid, day=day, greeted_at=now()).on_conflict(
        conflict_target=[Greeting.userid],
        update={Greeting.day: day, Greeting.greeted_at: now()},
        where=(Greeting.day != day),
    )
    return q.as_rowcount().execute() == 1


def _create(db: pw.Database) -> None:
    db.create_tables([Greeting])


# migration steps (store/migrations.py runs them in id order, each once)
STEPS = [
    ("0501_chat_greeting", _create),
]
