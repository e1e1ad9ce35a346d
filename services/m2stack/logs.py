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


class AccessLog:
    """One JSON line per request, the same shape as the JsonFormatter's, written in batches.

    The logging module costs more per line than the request it describes (a LogRecord,
    a lock, and a write and flush each): this buffers encoded lines and writes them with
    one call when `flush()` runs (the door does that every quarter second and at exit) or
    when `max_lines` are waiting. A process killed outright loses at most that batch."""

    def __init__(self, stream=None, max_lines: int = 256):
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.max_lines = max_lines
        self.lines: list[bytes] = []
        self._second = -1
        self._stamp = ""

    def write(self, fields: dict) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # strftime once a second, not once a line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        entry = {"time": f"{self._stamp}.{int(now * 1000) % 1000:03d}Z", "level": "info",
                 "logger": "m2stack.access", "message": "request", **fields}
        self.lines.append(_encode(entry) + b"\n")
        if len(self.lines) >= self.max_lines:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            data, self.lines = b"".join(self.lines), []
            try:
                self.stream.write(data)
                self.stream.flush()
            except (OSError, ValueError):  # stdout gone (closed pipe): nothing to log to
                pass
