"""JSON log lines on stdout: one object per line, extra fields kept."""

from __future__ import annotations

import logging
import sys
import time

import msgspec

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# A value JSON has no form for (an object, bytes in an odd place) is logged as its repr:
# a log line is never lost to what a caller put in `extra`.
_encode = msgspec.json.Encoder(enc_hook=repr).encode


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        try:
            return _encode(entry).decode("utf-8", "replace")
        except (TypeError, ValueError, OverflowError):  # e.g. a dict with non-string keys
            return _encode({key: value if isinstance(value, str) else repr(value)
                            for key, value in entry.items()}).decode("utf-8", "replace")


def setup(level: str = "INFO") -> None:
    level = level.upper()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
