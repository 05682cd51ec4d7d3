"""Process-wide Pixeltable settings that pixelbot depends on, applied once before first use."""

from __future__ import annotations

import os

DEFAULT_MODEL_RETRIES = 4


def configure_pixeltable(*, model_retries: int = DEFAULT_MODEL_RETRIES) -> None:
    """Quiet Pixeltable's console output and bound its retries of failing model calls.

    Pixeltable retries a retryable model error (429, 5xx, timeouts) up to 10 times with exponential
    backoff, well over a minute for a model that is down, while a Slack user waits. It has no setting
    for this, so the scheduler's class attribute is the cheapest correct lever. The verbosity must be
    set before Pixeltable initialises.
    """
    os.environ.setdefault("PIXELTABLE_VERBOSITY", "0")
    from pixeltable.exec.expr_eval.schedulers import RateLimitsScheduler

    RateLimitsScheduler.MAX_RETRIES = model_retries
