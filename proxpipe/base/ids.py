"""Ids of runs and plans: they sort by time and do not collide within a project; and who is running."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """YYYYmmdd-HHMMSS-xxxx. os.urandom rather than the secrets module, whose imports (base64, hmac, random) cost a
    no-op run a few milliseconds."""
    return time.strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()


# Who someone is in CI: the variables CI systems set for the person behind a job.
_CI_USERS = ("GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_USER_ID", "BUILDKITE_BUILD_CREATOR", "USER_LOGIN")


def who(given: str = "") -> str:
    """--by, else the CI's user variable, else the local user (for plans, approvals, promotions and builds)."""
    if given:
        return given
    import getpass

    return next((os.environ[name] for name in _CI_USERS if os.environ.get(name)), None) or getpass.getuser()
