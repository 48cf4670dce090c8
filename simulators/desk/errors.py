"""Exceptions of the desk simulator.

    DeskSimError
    ├── FaultConfigError     a fault switch or forced outcome is out of range (caller's mistake: fix the value)
    └── RequestRefusedError  a desk refuses a request; carries the desk-shaped HTTP answer to send back
"""

from __future__ import annotations

from simulators.desk.exchange import SimResponse


class DeskSimError(Exception):
    """Root of the desk simulator's exceptions."""


class FaultConfigError(DeskSimError, ValueError):
    """A fault switch, rate or forced outcome is invalid; the message names the field."""


class RequestRefusedError(DeskSimError):
    """A desk refuses the request; ``response`` is the answer the vendor would give (4xx, 507)."""

    def __init__(self, response: SimResponse) -> None:
        super().__init__(f"rejected with {response.status}")
        self.response = response
