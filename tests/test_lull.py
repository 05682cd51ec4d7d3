"""`Lull`: a turn's bookkeeping waits while other answers are being prepared or delivered, never
while they only wait on the model or while a request needs storage, and never past its patience."""

from __future__ import annotations

import asyncio

from bot.arrivals import Arrivals
from bot.lull import ARRIVALS_POLL, Lull


async def settled(task: asyncio.Task[None]) -> bool:
    """Whether `task` is done once the loop has run everything ready to run."""
    for _ in range(5):
        await asyncio.sleep(0)
    return task.done()


def test_bookkeeping_waits_for_the_answers_in_progress() -> None:
    async def scenario() -> None:
        lull = Lull(patience=3600)
        with lull.busy():
            waiting = asyncio.create_task(lull.wait(lull.now()))
            assert not await settled(waiting)
        assert await settled(waiting)

    asyncio.run(scenario())


def test_an_answer_waiting_on_the_model_or_a_request_reading_storage_holds_nothing_back() -> None:
    async def scenario() -> None:
        lull = Lull(patience=3600)
        with lull.busy():
            with lull.resting():
                assert await settled(asyncio.create_task(lull.wait(lull.now())))
            waiting = asyncio.create_task(lull.wait(lull.now()))
            assert not await settled(waiting)
            with lull.needed():
                assert await settled(waiting)

    asyncio.run(scenario())


def test_bookkeeping_goes_once_its_patience_is_spent() -> None:
    async def scenario() -> None:
        now = [100.0]
        lull = Lull(patience=1.0, clock=lambda: now[0])
        with lull.busy():
            assert not await settled(asyncio.create_task(lull.wait(99.5)))
            assert await settled(asyncio.create_task(lull.wait(99.0)))  # delivered a patience ago

    asyncio.run(scenario())


def test_turns_stored_together_go_one_at_a_time_each_once_there_is_a_lull() -> None:
    async def scenario() -> None:
        lull = Lull(patience=3600)
        stored: list[str] = []
        release = {name: asyncio.Event() for name in ("first", "second")}

        async def store(name: str) -> None:
            async with lull.turn(lull.now()):
                stored.append(name)
                await release[name].wait()

        first, second = asyncio.create_task(store("first")), asyncio.create_task(store("second"))
        assert not await settled(second)
        assert stored == ["first"]  # one at a time
        with lull.busy():  # answers are being delivered when the first is stored
            release["first"].set()
            assert await settled(first)
            assert not await settled(second)
            assert stored == ["first"]  # the second looks for a lull of its own
        assert not await settled(second)
        assert stored == ["first", "second"]
        release["second"].set()
        assert await settled(second)

    asyncio.run(scenario())


def test_bookkeeping_makes_way_for_acks_in_flight_but_not_past_its_patience() -> None:
    async def scenario() -> None:
        now = [100.0]
        arrivals = Arrivals()
        lull = Lull(patience=1.0, clock=lambda: now[0], arrivals=arrivals)
        with arrivals.arriving():  # a Slack request is being stored and acknowledged
            waiting = asyncio.create_task(lull.wait(lull.now()))
            await asyncio.sleep(ARRIVALS_POLL * 4)
            assert not waiting.done()
            with lull.needed():  # a request waiting to read storage: bookkeeping goes at once
                await asyncio.wait_for(asyncio.shield(waiting), 5)
            late = asyncio.create_task(lull.wait(lull.now()))
            await asyncio.sleep(ARRIVALS_POLL * 4)
            assert not late.done()
            now[0] += 1.0  # its patience spent
            await asyncio.wait_for(late, 5)
        acked = asyncio.create_task(lull.wait(lull.now()))  # nothing in flight any more
        await asyncio.wait_for(acked, 5)

    asyncio.run(scenario())
