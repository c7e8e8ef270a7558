"""PostgresStore objects for tests on a running server, in the test process or in a holder process of their own:

    TEST_STATE_URL=... python -m tests.statestore CACHE_DIR ENVIRONMENT lock|allocate
                                 holds the lock, or a template id, until killed (the URL never in a command line)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from proxpipe.base.secrets import Secret
from proxpipe.domain.state.postgres import PostgresStore
from proxpipe.domain.state.settings import StateConfig, schema_name


def store(url: str, cache: Path | str, environment: str, project: str = "unit") -> PostgresStore:
    settings = StateConfig(Secret(url, "TEST_URL", "test"), project, schema_name(project, environment), "test: state")
    return PostgresStore(Path(cache), environment, settings)


def main(cache: str, environment: str, what: str) -> None:
    mine = store(os.environ["TEST_STATE_URL"], cache, environment)
    if what == "lock":
        mine.acquire("deploy")
    else:
        print(mine.allocate_template_id("https://cluster", 9100, 9199, set), flush=True)
    print("held", flush=True)
    time.sleep(60)


if __name__ == "__main__":
    main(*sys.argv[1:4])
