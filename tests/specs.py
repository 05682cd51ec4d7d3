"""Where the vendors' published specifications are: `shared/specs` beside the repository.

CI clones the repository with `shared/` beside it; `PIXELBOT_SPECS_DIR` overrides the location.
"""

from __future__ import annotations

import os
from pathlib import Path

SPECS_DIR = Path(os.environ.get("PIXELBOT_SPECS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "specs")
OPENAI_SPEC = SPECS_DIR / "openai" / "openapi.json"
SLACK_SPECS_DIR = SPECS_DIR / "slack"
