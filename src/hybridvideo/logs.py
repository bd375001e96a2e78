"""Structured logging: one JSON object per line (or a readable line on a terminal).

Servers log through the standard library so uvicorn, huey and our own code share one
format; ``extra={...}`` fields end up as keys of the JSON line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    # Every HTTP request logs a line (api/app.py, RequestContext): what no format prints is
    # not collected, as the logging HOWTO's "Optimization" section suggests. The caller
    # lookup walks the stack on every record; thread and process names cost a lookup each.
    # Neither format above prints them (the JSON formatter skips standard attributes).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "huey"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel("WARNING")
    # Alembic narrates every plugin and context at INFO; only its problems are news.
    logging.getLogger("alembic").setLevel("WARNING")
    # One INFO line per HTTP request of our Stream client would drown a migration's log.
    logging.getLogger("httpx").setLevel("WARNING")
