"""The bot's Prometheus metrics, served by the HTTP server as `GET /metrics` (Prometheus text format).

Each bot has a registry of its own, never `prometheus_client`'s global one: a process runs one bot,
but tests build many in one process. In Socket Mode the bot runs no HTTP server, so nothing serves
these yet (they are still recorded).

- `pixelbot_requests_total{kind, outcome}`: requests, by inbox kind (mention, followup, direct, tool;
  and listened, edited, deleted, feedback, which are taken in, not answered) and by how they ended
  (`answered`, `failed`, `undeliverable`: the status the inbox row was closed with; a message that is
  not a request counts as `answered` once taken in, `failed` if taking it in raised).
- `pixelbot_answer_seconds{kind}`: from a request's receipt to its answer (or its friendly error)
  delivered.
- `pixelbot_model_seconds`: each completed model call's duration (a failed one has none to report).
- `pixelbot_model_errors_total{failure}`: answers the model failed (or cut off), by `ModelFailure`.
- Read at scrape time: `pixelbot_inbox_open_requests` and `pixelbot_inbox_oldest_open_seconds` (left
  out of a scrape when the inbox can't be read), `pixelbot_answers_in_flight` (answers queued, running
  or not yet stored), `pixelbot_agents_open` (channel agents held open) and
  `pixelbot_gc_frozen_objects` (objects the cycle collector skips: what `bot.collector` froze in a
  serving process; 0 where it is not installed, as in a bot built by tests in their own process, and
  from each thaw until the next full collection).

Recording never raises: a metric that cannot be recorded is a log line, never a failed answer.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.agent import Outcome
from agent.errors import ModelFailure
from bot.inbox import InboxItem, RequestKind, Status

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what `generate_latest` writes
ANSWER_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0, 300.0)
MODEL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
OUTCOMES = (Status.ANSWERED, Status.FAILED, Status.UNDELIVERABLE)
GAUGES = {
    "pixelbot_inbox_open_requests": "Requests received and not yet answered, by any worker sharing the inbox.",
    "pixelbot_inbox_oldest_open_seconds": "Age of the oldest open request, in seconds (0 if none).",
    "pixelbot_answers_in_flight": "Answers queued or being written, and answered turns not yet stored.",
    "pixelbot_agents_open": "Channel agents held open.",
    "pixelbot_gc_frozen_objects": "Objects Python's cycle collector skips (frozen by bot.collector).",
}


class Metrics:
    """One bot's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pixelbot_requests",
            "Requests and messages handled, by inbox kind and how they ended.",
            ("kind", "outcome"),
            registry=self.registry,
        )
        self.answer_seconds = Histogram(
            "pixelbot_answer_seconds",
            "Seconds from a request's receipt to its answer delivered.",
            ("kind",),
            buckets=ANSWER_BUCKETS,
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "pixelbot_model_seconds",
            "Seconds each completed model call took.",
            buckets=MODEL_BUCKETS,
            registry=self.registry,
        )
        self.model_errors = Counter(
            "pixelbot_model_errors", "Answers the model failed, by failure.", ("failure",), registry=self.registry
        )
        for kind in RequestKind:  # every series from 0, so that a rate is right from the first scrape
            for outcome in OUTCOMES if kind.is_request else OUTCOMES[:2]:
                self.requests.labels(kind.value, outcome.value)
            if kind.is_request:
                self.answer_seconds.labels(kind.value)
        for failure in ModelFailure:
            self.model_errors.labels(failure.value)

    def ended(self, item: InboxItem, status: Status) -> None:
        """`item` ended with `status` (a request's inbox row closed, or a message taken in)."""
        with _recording("a request"):
            self.requests.labels(item.kind.value, status.value).inc()

    def delivered(self, item: InboxItem) -> None:
        """The answer to `item` (or its friendly error) is delivered now."""
        with _recording("an answer's time"):
            seconds = (datetime.now(UTC) - item.received_at).total_seconds()
            self.answer_seconds.labels(item.kind.value).observe(max(0.0, seconds))

    def thought(self, outcome: Outcome) -> None:
        """The model calls of an answer, and its failure if the model failed it."""
        with _recording("model calls"):
            for call in outcome.calls:
                if call.error is None and call.response is not None:
                    self.model_seconds.observe(call.seconds)
            error = outcome.error or outcome.cut_off
            if error is not None:
                self.model_errors.labels(error.failure.value).inc()

    def watch(
        self,
        open_requests: Callable[[], tuple[int, float]],
        answers_in_flight: Callable[[], int],
        agents_open: Callable[[], int],
    ) -> None:
        """Report these at every scrape: `Inbox.open_requests`, `Answerer.pending`, the open agents."""
        self.registry.register(_Gauges(open_requests, answers_in_flight, agents_open))

    def render(self) -> bytes:
        """Every metric, in Prometheus text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


@contextlib.contextmanager
def _recording(what: str) -> Iterator[None]:
    try:
        yield
    except Exception:
        logger.warning("could not record the metrics of %s", what, exc_info=True)


class _Gauges(Collector):
    """Gauges read when Prometheus scrapes; a value that can't be read is left out, never an error."""

    def __init__(
        self,
        open_requests: Callable[[], tuple[int, float]],
        answers_in_flight: Callable[[], int],
        agents_open: Callable[[], int],
    ) -> None:
        self._open_requests = open_requests
        self._counts = {
            "pixelbot_answers_in_flight": answers_in_flight,
            "pixelbot_agents_open": agents_open,
            "pixelbot_gc_frozen_objects": gc.get_freeze_count,
        }

    def describe(self) -> Iterable[Metric]:
        """The gauges' names, so that registering them queries nothing."""
        return [GaugeMetricFamily(name, documentation) for name, documentation in GAUGES.items()]

    def collect(self) -> Iterable[Metric]:
        values: dict[str, float] = {}
        try:
            count, oldest = self._open_requests()
            values |= {"pixelbot_inbox_open_requests": count, "pixelbot_inbox_oldest_open_seconds": oldest}
        except Exception as error:
            logger.warning("metrics: could not read the inbox's open requests: %s", type(error).__name__)
        for name, read in self._counts.items():
            try:
                values[name] = read()
            except Exception:
                logger.warning("metrics: could not read %s", name, exc_info=True)
        return [GaugeMetricFamily(name, GAUGES[name], value=value) for name, value in values.items()]
