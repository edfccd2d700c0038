"""Structured JSON logs on stderr, one object per line.

Callers pass facts through `extra={...}`; personal data and secrets are never passed in the
first place (the feedback service logs counts of redactions, not comments).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(service: str, level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # FastStream installs its own colourised stderr handler at import: route it through ours instead.
    for owned in ("faststream", "faststream.access", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(owned)
        logger.handlers[:] = []
        logger.propagate = True
    # Library chatter at INFO (every FastStream message, every aiokafka rebalance) drowns the signal.
    for noisy in ("aiokafka", "faststream", "uvicorn.access", "pymongo", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
