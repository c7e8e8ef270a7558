"""Ids of runs and plans: they sort by time and do not collide within a project."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """YYYYmmdd-HHMMSS-xxxx. os.urandom rather than the secrets module, whose imports (base64, hmac, random) cost a
    no-op run a few milliseconds."""
    return time.strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()
