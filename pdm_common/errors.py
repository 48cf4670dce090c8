"""Exceptions of the shared layer.

    PdmCommonError
    ├── ContractError      a payload or topic broke a wire contract (permanent: dead-letter it)
    ├── ConfigError        settings failed validation at start-up (permanent: fix the config)
    └── ProfileError       a machine kind has no profile or its declaration is invalid (permanent)
"""

from __future__ import annotations


class PdmCommonError(Exception):
    """Root of the shared layer's exceptions."""


class ContractError(PdmCommonError, ValueError):
    """A payload or topic does not satisfy the wire contract.

    Attributes:
        reason: a short, stable machine-readable code (``not_json``, ``invalid_field`` …)
            used as the dead-letter reason and as a metrics label.
        detail: a human-readable explanation naming the offending field.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ConfigError(PdmCommonError):
    """Settings are invalid; the message names each field, its value and how to fix it."""


class ProfileError(PdmCommonError, ValueError):
    """A machine kind has no profile, or a declared profile is invalid (the message names the field)."""


class Redeliver(PdmCommonError):
    """Raised by a message handler: this message cannot be handled *now* (say, the disk is full).

    The MQTT client (:mod:`pdm_common.mqtt`) treats it like any handler failure (not acknowledged,
    reconnect, the broker redelivers from the persistent session) but logs one line without a
    traceback: the handler already said why, and the condition is expected and reported in the
    service's health.
    """
