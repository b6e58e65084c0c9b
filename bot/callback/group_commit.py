"""Group commit: deliveries that are ready at the same moment share one transaction.

    group = GroupCommit(loop, apply=deliveries.apply)
    reply = await group.submit(delivery)

While a group's transaction runs, new items wait; when it ends they form the next group. Under
load each transaction (and each disk flush) carries many deliveries; alone, a delivery waits for
nothing but its own. Every future is resolved only after `apply` returned, that is after the
commit. The engine knows nothing of deliveries: `apply(items)` returns one outcome per item,
`(True, value)` or `(False, exception)`.

With an `executor` (PostgreSQL), `lanes` groups may be in flight at once, each on its own thread
and connection: while one waits for its disk flush the event loop keeps reading requests and the
next group is already being applied. Without one (SQLite), `apply` runs on the event loop: it
takes microseconds and SQLite has one writer anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")
Outcome = tuple[bool, object]

MAX_GROUP = 64  # items per transaction


class GroupCommit(Generic[T]):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        apply: Callable[[list[T]], list[Outcome]],
        executor: Executor | None = None,
        lanes: int = 1,
        max_group: int = MAX_GROUP,
    ):
        self.loop = loop
        self._apply, self._executor, self._max = apply, executor, max_group
        self._waiting: list[tuple[T, asyncio.Future[object]]] = []
        self._free = lanes if executor is not None else 1  # lanes not running a group

    def submit(self, item: T) -> asyncio.Future[object]:
        future: asyncio.Future[object] = self.loop.create_future()
        self._waiting.append((item, future))
        if self._free:
            self._free -= 1
            self.loop.call_soon(self._next)  # after the items that are ready in this turn of the loop
        return future

    def _next(self) -> None:
        """One lane takes the waiting items as its next group, or goes idle."""
        group, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
        if not group:
            self._free += 1
            return
        items = [item for item, _ in group]
        if self._executor is not None:
            f = self.loop.run_in_executor(self._executor, self._apply, items)
            f.add_done_callback(lambda f: self._settle(group, f))
            return
        try:
            outcomes = self._apply(items)
        except BaseException as e:  # a bug in apply: every item of the group fails
            outcomes = [(False, e)] * len(group)
        self._resolve(group, outcomes)

    def _settle(self, group: list[tuple[T, asyncio.Future[object]]], f: asyncio.Future[list[Outcome]]) -> None:
        e = f.exception() if not f.cancelled() else asyncio.CancelledError()
        self._resolve(group, [(False, e)] * len(group) if e else f.result())

    def _resolve(self, group: list[tuple[T, asyncio.Future[object]]], outcomes: list[Outcome]) -> None:
        for (_, future), (ok, value) in zip(group, outcomes, strict=True):
            if not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value if isinstance(value, BaseException) else RuntimeError(value))
        self.loop.call_soon(self._next)
