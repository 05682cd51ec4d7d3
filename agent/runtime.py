"""Process-wide Pixeltable settings that pixelbot depends on, applied once before first use."""

from __future__ import annotations

import os

DEFAULT_MODEL_RETRIES = 4
DEFAULT_MODEL_TIMEOUT = 60.0

# Pixeltable 0.7.21 reads the OpenAI read timeout as key "openai.read_timeout" of section "pixeltable"
# (so `OPENAI_READ_TIMEOUT` is ignored and the timeout stays at 120 s); the environment variable it
# actually consults has a dot in its name, which only a program can set.
_READ_TIMEOUT_VARIABLE = "PIXELTABLE_OPENAI.READ_TIMEOUT"


def configure_pixeltable(
    *, model_retries: int = DEFAULT_MODEL_RETRIES, model_timeout: float = DEFAULT_MODEL_TIMEOUT
) -> None:
    """Quiet Pixeltable's console output and bound how long a failing model call can keep a user waiting.

    Pixeltable retries a retryable model error (429, 5xx, timeouts) up to 10 times with exponential
    backoff, well over a minute for a model that is down. It has no setting for this, so the
    scheduler's class attribute is the cheapest correct lever. Verbosity and timeout must be set
    before Pixeltable initialises.
    """
    os.environ.setdefault("PIXELTABLE_VERBOSITY", "0")
    os.environ[_READ_TIMEOUT_VARIABLE] = str(model_timeout)
    from pixeltable.exec.expr_eval.schedulers import RateLimitsScheduler

    RateLimitsScheduler.MAX_RETRIES = model_retries


def warm_up_thread() -> None:
    """Pay this thread's one-time costs before a user waits on them.

    Pixeltable keeps a runtime per thread, with its own OpenAI client; creating the first one also
    imports the client's modules (about 0.35 s of a first answer's 0.5 s, measured).
    """
    import pixeltable.functions.openai  # noqa: F401  (registers the client factory)
    from pixeltable.runtime import get_runtime

    from agent.tokens import count_tokens

    get_runtime().get_client("openai")
    count_tokens("")  # loads the tokenizer (100-150 ms) once per process
