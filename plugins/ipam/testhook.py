"""Named points where a test may kill or mark the running plugin (crash-safety tests).

MYCNI_IPAM_TEST_HOOK=`kill@<point>` SIGKILLs the process on reaching <point>;
`mark@<point>` writes `hook <point>` to stderr there so a test can kill it a random
moment later. Unset (always, outside tests), reaching a point is one dict lookup.
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "MYCNI_IPAM_TEST_HOOK"


def reach(point: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    action, _, where = spec.partition("@")
    if where != point:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "mark":
        sys.stderr.write(f"hook {point}\n")
        sys.stderr.flush()
