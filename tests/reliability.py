"""What the reliability suite did, for docs/RELIABILITY.md (see tests/reliability_report.py).

Tests call ``record(kind, what, **details)``; with ``OVERLAY_BOOT_RELIABILITY_LOG`` set, each
call appends one JSON line to that file (else nothing happens). Kinds: ``fault`` (an injected
fault and what was found after it), ``load`` (one start/stop cycle of the load test),
``isolation`` (a check from inside a subhost).
"""

from __future__ import annotations

import fcntl
import json
import os
import time

ENV = "OVERLAY_BOOT_RELIABILITY_LOG"


def record(kind: str, what: str, **details: object) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"kind": kind, "what": what, "time": time.time(), **details},
                      default=str) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line)
