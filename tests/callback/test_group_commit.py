"""bot.callback.group_commit on its own: items ready at once form one group, each future resolves
with its own outcome only after `apply` returned, a failing `apply` fails its group only, and with
an executor `lanes` groups run at once."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.callback.group_commit import GroupCommit


def run(coro):
    return asyncio.run(coro)


def test_items_ready_together_share_one_group_and_get_their_own_outcome():
    groups = []

    def apply(items):
        groups.append(list(items))
        return [(True, f"reply-{i}") if i % 3 else (False, ValueError(f"bad {i}")) for i in items]

    async def main():
        g = GroupCommit(asyncio.get_running_loop(), apply)
        futures = [g.submit(i) for i in range(1, 8)]
        return await asyncio.gather(*futures, return_exceptions=True)

    out = run(main())
    assert groups == [[1, 2, 3, 4, 5, 6, 7]]
    assert out[0] == "reply-1" and isinstance(out[2], ValueError) and str(out[5]) == "bad 6"


def test_items_arriving_while_a_group_runs_form_the_next_group():
    groups = []

    async def main():
        loop = asyncio.get_running_loop()
        release = threading.Event()

        def apply(items):
            groups.append(list(items))
            if len(groups) == 1:
                release.wait(5)  # the first group's "commit" takes a while
            return [(True, i) for i in items]

        with ThreadPoolExecutor(1) as pool:
            g = GroupCommit(loop, apply, executor=pool, lanes=1)
            first = g.submit("a")
            await asyncio.sleep(0.05)  # the first group is running
            later = [g.submit(x) for x in "bcd"]
            await asyncio.sleep(0.05)
            assert not any(f.done() for f in [first, *later])  # nothing answers before its commit
            release.set()
            return await asyncio.gather(first, *later)

    assert run(main()) == ["a", "b", "c", "d"]
    assert groups == [["a"], ["b", "c", "d"]]


def test_groups_are_at_most_max_group_items():
    groups = []

    def apply(items):
        groups.append(len(items))
        return [(True, None)] * len(items)

    async def main():
        g = GroupCommit(asyncio.get_running_loop(), apply, max_group=4)
        await asyncio.gather(*(g.submit(i) for i in range(10)))

    run(main())
    assert groups == [4, 4, 2]


def test_a_raising_apply_fails_its_group_and_the_engine_goes_on():
    calls = []

    def apply(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("store down")
        return [(True, i) for i in items]

    async def main():
        g = GroupCommit(asyncio.get_running_loop(), apply)
        with pytest.raises(RuntimeError, match="store down"):
            await g.submit(1)
        return await g.submit(2)

    assert run(main()) == 2


def test_with_an_executor_lanes_groups_run_at_once():
    running, peak, lock = [0], [0], threading.Lock()
    gate = threading.Barrier(2, timeout=5)

    def apply(items):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        gate.wait()  # both lanes must be inside apply at the same time
        with lock:
            running[0] -= 1
        return [(True, i) for i in items]

    async def main():
        with ThreadPoolExecutor(2) as pool:
            g = GroupCommit(asyncio.get_running_loop(), apply, executor=pool, lanes=2)
            a = g.submit("a")
            await asyncio.sleep(0.02)  # the first lane takes "a" alone
            b = g.submit("b")
            return await asyncio.gather(a, b)

    assert run(main()) == ["a", "b"] and peak[0] == 2
