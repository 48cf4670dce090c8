"""Structured logging: one event per line, logfmt (default) or JSON, secrets redacted.

Every log call names an event (``telemetry.dead_lettered``) and passes facts as keywords::

    log = get_logger("edge_agent.ingest")
    log.warning("broker.unreachable", host=host, retry_in_s=5.0, action="check the broker is running")

Lines are rendered by structlog's :class:`~structlog.processors.LogfmtRenderer` (``ts=… level=…
event=… key=value``, quoted where needed) or its JSON renderer (``[log] format = "json"``).

Under systemd the lines go to journald through stderr. When stderr *is* the journal (systemd sets
``JOURNAL_STREAM`` to the device and inode of that stream, systemd.exec(5)), each line starts with
the sd-daemon(3) priority prefix — ``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug —
which journald strips and stores as the entry's ``PRIORITY`` (``SyslogLevelPrefix=`` is on by
default), so ``journalctl -p warning -u pdm-edge-agent`` shows exactly the warnings and worse.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal, TextIO

import structlog
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "LogFormat",
    "LogSettings",
    "configure_logging",
    "get_logger",
    "journal_priority",
    "redact_secrets",
    "stream_is_journal",
]

LogFormat = Literal["kv", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "authorization", "routing_key", "credential")

_PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3, "critical": 2}
"""syslog(3) priorities of sd-daemon(3): LOG_DEBUG 7, LOG_INFO 6, LOG_WARNING 4, LOG_ERR 3, LOG_CRIT 2."""

_KEY_ORDER = ["ts", "level", "event"]


class LogSettings(BaseModel):
    """``[log]`` of both services: level and line format (env ``PDM_LOG__LEVEL``, ``PDM_LOG__FORMAT``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: LogLevel = Field("info", description="debug, info, warning or error")
    format: LogFormat = Field("kv", description="kv (logfmt key=value) or json, one event per line")


def redact_secrets(_logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace the value of any key that names a secret with ``<redacted>``."""
    for key in list(event_dict):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event_dict[key] = "<redacted>"
    return event_dict


def journal_priority(level: str) -> int:
    """The syslog priority of a log level name (unknown names count as info)."""
    return _PRIORITIES.get(level.lower(), 6)


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journald stream systemd connected (``JOURNAL_STREAM=dev:inode``)."""
    env = os.environ if environ is None else environ
    dev, _, ino = env.get("JOURNAL_STREAM", "").partition(":")
    try:
        info = os.fstat(stream.fileno())
        return (info.st_dev, info.st_ino) == (int(dev), int(ino))
    except (ValueError, OSError, AttributeError):  # not set, malformed, or a stream without a descriptor
        return False


class _Prefixed:
    """Renders with ``inner`` and puts the journald priority of the event's level in front."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, logger: object, method: str, event_dict: MutableMapping[str, Any]) -> str:
        priority = journal_priority(str(event_dict.get("level", method)))
        return f"<{priority}>{self._inner(logger, method, event_dict)}"


class _StdlibFormatter(logging.Formatter):
    """Third-party library records as one logfmt line, ``event=library.log``."""

    def __init__(self, prefix: bool) -> None:
        super().__init__()
        self._prefix = prefix
        self._render = structlog.processors.LogfmtRenderer(key_order=_KEY_ORDER, drop_missing=True,
                                                           bool_as_flag=False)

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        line = self._render(None, level, {"ts": self.formatTime(record), "level": level, "event": "library.log",
                                          "logger": record.name, "msg": record.getMessage()})
        return f"<{journal_priority(level)}>{line}" if self._prefix else line


def configure_logging(*, level: str = "info", fmt: LogFormat = "kv", stream: TextIO | None = None,
                      journal: bool | None = None) -> None:
    """Configure structlog (and stdlib logging of third-party libraries) once at start-up.

    Args:
        level: the lowest level written (debug, info, warning, error, critical).
        fmt: ``kv`` (logfmt) or ``json``.
        stream: where lines go (default stderr).
        journal: prefix each line with its journald priority; default: when ``stream`` is the
            journal stream systemd connected (:func:`stream_is_journal`).
    """
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.processors.LogfmtRenderer(key_order=_KEY_ORDER, drop_missing=True, bool_as_flag=False)
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    out = stream if stream is not None else sys.stderr
    prefix = stream_is_journal(out) if journal is None else journal
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            redact_secrets,
            structlog.processors.format_exc_info,
            _Prefixed(renderer) if prefix else renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(_StdlibFormatter(prefix))
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[handler], force=True)


def get_logger(name: str) -> Any:
    """A structured logger bound to ``component=name``.

    Lazy: modules call this at import time, before :func:`configure_logging` runs, and must still
    get the configured processors and output.
    """
    return structlog.get_logger(component=name)
