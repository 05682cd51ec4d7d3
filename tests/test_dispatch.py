"""The ordered dispatcher: FIFO per key, keys in parallel, failures contained (unit tests, no I/O)."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from bot.dispatch import OrderedDispatcher


def busy_then_record(seen: list[int], index: int, spin: int) -> None:
    sum(range(spin))  # uneven work, so a reordering dispatcher would show
    seen.append(index)


def test_jobs_of_one_key_run_in_submission_order() -> None:
    dispatcher = OrderedDispatcher(workers=4)
    seen: list[int] = []
    rng = random.Random(7)

    for index in range(200):
        dispatcher.submit("C1", partial(busy_then_record, seen, index, rng.randint(0, 2000)))
    dispatcher.shutdown(wait=True)

    assert seen == list(range(200))


def test_keys_submitted_from_many_threads_keep_their_own_order() -> None:
    dispatcher = OrderedDispatcher(workers=4)
    seen: dict[str, list[int]] = {f"C{k}": [] for k in range(8)}

    def submit_all(key: str) -> None:
        for index in range(50):
            dispatcher.submit(key, partial(seen[key].append, index))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit_all, seen))
    dispatcher.shutdown(wait=True)

    assert all(order == list(range(50)) for order in seen.values())


def test_keys_on_different_threads_run_at_the_same_time() -> None:
    dispatcher = OrderedDispatcher(workers=4)
    first = "C0"
    second = next(
        f"C{n}" for n in range(1, 100) if dispatcher._thread_for(f"C{n}") is not dispatcher._thread_for(first)
    )
    both_running = threading.Barrier(2, timeout=5)
    results: list[str] = []

    def meet_then_record(key: str) -> None:
        both_running.wait()
        results.append(key)

    for key in (first, second):
        dispatcher.submit(key, partial(meet_then_record, key))
    dispatcher.shutdown(wait=True)

    assert sorted(results) == sorted([first, second]), "a serialised dispatcher would break the barrier"


def fail() -> None:
    raise RuntimeError("boom")


def test_a_failing_job_does_not_stop_the_next_ones() -> None:
    dispatcher = OrderedDispatcher(workers=2)
    seen: list[str] = []

    dispatcher.submit("C1", lambda: seen.append("before"))
    dispatcher.submit("C1", fail)
    dispatcher.submit("C1", lambda: seen.append("after"))
    dispatcher.shutdown(wait=True)

    assert seen == ["before", "after"] and dispatcher.pending() == 0


def test_run_on_every_thread_reaches_each_worker_once() -> None:
    dispatcher = OrderedDispatcher(workers=3)
    names: list[str] = []

    dispatcher.run_on_every_thread(lambda: names.append(threading.current_thread().name))
    dispatcher.shutdown()

    assert len(names) == len(set(names)) == 3
