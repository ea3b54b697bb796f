"""The server's wake hub: a wake wakes one waiter per kind of claim, not every waiter."""

from __future__ import annotations

import asyncio

from hpclaunch.queue import migrate
from hpclaunch.server.wakeup import WakeHub


def _run(tmp_path, scenario) -> None:
    url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    migrate.upgrade(url)

    async def main() -> None:
        hub = WakeHub(url)
        hub.start()
        while hub.generation == 0:  # the listener's first wake ("look now") has come
            await asyncio.sleep(0.01)
        try:
            await scenario(hub)
        finally:
            hub.stop()

    asyncio.run(main())


async def _waiters(hub: WakeHub, keys: list[object | None]) -> list[asyncio.Task[bool]]:
    seen = hub.generation
    tasks = [asyncio.ensure_future(hub.wait(seen, 30, key)) for key in keys]
    await asyncio.sleep(0.05)  # all registered, oldest first
    return tasks


def _woken(tasks: list[asyncio.Task[bool]]) -> list[bool]:
    return [t.done() and t.result() for t in tasks]


def test_a_wake_wakes_the_oldest_waiter_of_each_key_and_every_keyless_one(tmp_path):
    async def scenario(hub: WakeHub) -> None:
        tasks = await _waiters(hub, ["a", "a", "a", "b", "b", None, None])
        hub.poke()
        await asyncio.sleep(0.05)
        assert _woken(tasks) == [True, False, False, True, False, True, True]
        hub.pass_on("a", 2)  # the woken "a" claimed a task: two more look
        await asyncio.sleep(0.05)
        assert _woken(tasks) == [True, True, True, True, False, True, True]
        hub.pass_on("a", 2)  # nobody of "a" left to wake: nothing happens
        hub.pass_on("c")
        tasks[4].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert hub._waiting == {}  # nothing left behind

    _run(tmp_path, scenario)


def test_a_waiter_woken_then_gone_hands_its_wake_on(tmp_path):
    async def scenario(hub: WakeHub) -> None:
        tasks = await _waiters(hub, ["a", "a"])
        hub.poke()
        tasks[0].cancel()  # its client left before it could claim
        await asyncio.sleep(0.05)
        assert tasks[0].cancelled() and _woken(tasks[1:]) == [True]

    _run(tmp_path, scenario)


def test_a_wake_before_the_wait_returns_at_once_and_a_timeout_leaves_nothing(tmp_path):
    async def scenario(hub: WakeHub) -> None:
        seen = hub.generation
        hub.poke()  # a task came while this claim was looking
        assert await hub.wait(seen, 30, "a") is True
        assert await hub.wait(hub.generation, 0.05, "a") is False
        assert hub._waiting == {}

    _run(tmp_path, scenario)
