"""What people do in each desk's UI (``/_sim/act``): acknowledge, resolve, reassign, comment.

Two-way sync is tested against these: the bridge must hear about them (polling, or PagerDuty's
webhooks) and tell the edge. Each desk module implements ``person_acts``; this table routes to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulators.desk import jsm, pagerduty, servicenow, zendesk
from simulators.desk.routing import DeskContext, HumanAction
from simulators.desk.store import Desk, Outgoing

__all__ = ["HUMAN_ACTIONS", "HumanAction"]

HUMAN_ACTIONS: dict[Desk, Callable[[DeskContext, HumanAction, Outgoing], dict[str, Any]]] = {
    Desk.PAGERDUTY: pagerduty.person_acts,
    Desk.ZENDESK: zendesk.person_acts,
    Desk.JSM: jsm.person_acts,
    Desk.SERVICENOW: servicenow.person_acts,
}
