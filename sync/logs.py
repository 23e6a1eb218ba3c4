"""Logging for `dualline sync`, `scheduler`, `worker` and `beat`: human lines, or JSON on request.

    dualline --log-format json scheduler        # or DUALLINE_LOG_FORMAT=json

JSON: one object per line — `ts` (UTC, ISO 8601), `level`, `logger`, `msg`, then whatever the
call site passed as `extra` (`run_id`, `source`, `kind`, `partition`, `status`, …) and `exc` with
the traceback when there is one — for log shippers (Loki, ELK, SLS) to index without parsing.
The default stays the human `time level logger: message`.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any

FORMATS = ("human", "json")
HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ENV = "DUALLINE_LOG_FORMAT"

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format(explicit: str | None = None) -> str:
    """`--log-format` if given, else $DUALLINE_LOG_FORMAT, else human."""
    value = (explicit or os.environ.get(ENV) or "human").strip().lower()
    return value if value in FORMATS else "human"


def setup_logging(level: int | str = logging.INFO, fmt: str | None = None) -> str:
    """Configure the root logger for this process (replacing the handler of an earlier call);
    returns the format in use."""
    chosen = log_format(fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(HUMAN_FORMAT))
    handler._dualline = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):  # ours from an earlier call only: test harnesses keep theirs
        if getattr(old, "_dualline", False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return chosen
