"""One log format for both daemons, on stderr.

``text`` (the default)::

    2026-12-06 03:00:17,123 keyless-edge[4242] WARNING keyless.edge: handshake failed peer=192.0.2.1:5555 sni=a.test ...

``json`` (``--log-format json``): one object per line with the same fields everywhere —
``time``, ``level``, ``daemon``, ``pid``, ``worker`` (index of a ``--workers`` worker, absent in a single
process or a supervisor), ``logger``, ``message``, and ``peer``, ``sni``, ``request_id`` when the line is
about a connection or request (passed as ``extra={"peer": ...}``).

When stderr is journald's (systemd sets ``JOURNAL_STREAM`` to its device:inode), every line starts with
the syslog priority ``<N>`` so ``journalctl -p warning`` works.

No secret is ever passed to a logger; values that come from peers (SNI, request ids) are escaped by the
JSON encoder or, in text, by the caller (``printable``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

FORMATS = ("text", "json")
WORKER_INDEX_VARIABLE = "KEYLESS_WORKER_INDEX"
CONTEXT_FIELDS = ("peer", "sni", "request_id")

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def syslog_priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _SYSLOG_PRIORITY[level]
    return _SYSLOG_PRIORITY[logging.DEBUG]


def stream_is_journald(stream: TextIO) -> bool:
    """True when ``stream`` is the socket systemd connected to the journal (``JOURNAL_STREAM=dev:inode``)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = expected.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def printable(data: bytes | str) -> str:
    """Peer-supplied text for a log line: control characters and non-ASCII escaped (no log injection)."""
    raw = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    return raw.decode("ascii", "backslashreplace").encode("unicode_escape").decode("ascii")


def worker_index() -> int | None:
    value = os.environ.get(WORKER_INDEX_VARIABLE, "")
    return int(value) if value.isdigit() else None


def speaks_for_all() -> bool:
    """Whether this process logs what the configuration deserves a warning for: a single process, or the
    first worker of ``--workers N`` (the workers share one configuration; N copies of a line help no one)."""
    return worker_index() in (None, 0)


class _Formatter(logging.Formatter):
    def __init__(self, daemon: str, json_lines: bool, journald: bool) -> None:
        super().__init__()
        self.daemon = daemon
        self.json_lines = json_lines
        self.journald = journald
        self.worker = worker_index()

    def format(self, record: logging.LogRecord) -> str:
        line = self._json(record) if self.json_lines else self._text(record)
        if self.journald:
            line = f"<{syslog_priority(record.levelno)}>{line}"
        return line

    def _text(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        text = (f"{stamp},{int(record.msecs):03d} keyless-{self.daemon}[{record.process}] {record.levelname} "
                f"{record.name}: {record.getMessage()}")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text

    def _json(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "daemon": self.daemon,
            "pid": record.process,
        }
        if self.worker is not None:
            entry["worker"] = self.worker
        entry["logger"] = record.name
        entry["message"] = record.getMessage()
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


def configure(daemon: str, level: str | int = "INFO", log_format: str = "text", stream: TextIO | None = None) -> None:
    """Send every logger's records to stderr (or ``stream``) in the daemon's one format."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: use one of {', '.join(FORMATS)}")
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(_Formatter(daemon, log_format == "json", stream_is_journald(out)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else getattr(logging, str(level).upper(), logging.INFO))


class RateLimitedLog:
    """At most ``burst`` lines per ``period`` seconds for one kind of event (a handshake flood must not
    fill the disk); the next line allowed after a quiet spell says how many were left out."""

    def __init__(self, logger: logging.Logger, burst: int = 20, period: float = 10.0) -> None:
        self.logger = logger
        self.burst = burst
        self.period = period
        self._window_start = float("-inf")
        self._logged = 0
        self._suppressed = 0

    def log(self, level: int, message: str, *args: object, extra: dict[str, Any] | None = None) -> bool:
        if not self.logger.isEnabledFor(level):
            return False
        now = time.monotonic()
        if now - self._window_start >= self.period:
            if self._suppressed:
                self.logger.log(level, "%d similar lines left out in the last %.0f s", self._suppressed,
                                self.period)
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged >= self.burst:
            self._suppressed += 1
            return False
        self._logged += 1
        self.logger.log(level, message, *args, extra=extra)
        return True


__all__ = ["FORMATS", "RateLimitedLog", "configure", "printable", "stream_is_journald", "syslog_priority"]
