"""Structured logging: one event per line, ``key=value`` (default) or JSON, secrets redacted.

Every log call names an event (``telemetry.dead_lettered``) and passes facts as keywords::

    log = get_logger("edge_agent.ingest")
    log.warning("broker.unreachable", host=host, retry_in_s=5.0, action="check the broker is running")

Under systemd the lines go to journald through stderr; ``PDM_LOG_FORMAT=json`` switches to JSON.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

__all__ = ["LogFormat", "configure_logging", "get_logger", "redact_secrets"]

LogFormat = Literal["kv", "json"]
_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "authorization", "routing_key", "credential")


def redact_secrets(_logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace the value of any key that names a secret with ``<redacted>``."""
    for key in list(event_dict):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event_dict[key] = "<redacted>"
    return event_dict


def configure_logging(*, level: str = "info", fmt: LogFormat = "kv", stream: TextIO | None = None) -> None:
    """Configure structlog (and stdlib logging of third-party libraries) once at start-up."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.processors.KeyValueRenderer(key_order=["ts", "level", "event"], drop_missing=True)
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    out = stream if stream is not None else sys.stderr
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=out, format="ts=%(asctime)s level=%(levelname)s "
                        "event=library.log logger=%(name)s msg=%(message)r", force=True)


def get_logger(name: str) -> Any:
    """A structured logger bound to ``component=name``.

    Lazy: modules call this at import time, before :func:`configure_logging` runs, and must still
    get the configured processors and output.
    """
    return structlog.get_logger(component=name)
