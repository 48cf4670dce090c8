"""Desk adapters: one module per service desk, all behind the :class:`~cloud_bridge.desks.base.DeskAdapter`
protocol, registered in :data:`ADAPTERS` by the ``kind`` a ``[desks.<name>]`` table names.

Adding a desk is one module plus one line here (and a :class:`~cloud_bridge.config.DeskKind` value);
the desk contract suite (``tests/bridge/test_desks.py``) runs over every entry of :data:`ADAPTERS`
and says what the new desk is missing.
"""

from __future__ import annotations

from cloud_bridge.config import DeskKind, DeskSettings
from cloud_bridge.desks.base import DeskAdapter
from cloud_bridge.desks.jsm import JsmAdapter
from cloud_bridge.desks.pagerduty import PagerDutyAdapter
from cloud_bridge.desks.servicenow import ServiceNowAdapter
from cloud_bridge.desks.webhook import WebhookAdapter
from cloud_bridge.desks.zendesk import ZendeskAdapter

__all__ = ["ADAPTERS", "make_adapter"]

ADAPTERS: dict[DeskKind, type[DeskAdapter]] = {
    DeskKind.WEBHOOK: WebhookAdapter,
    DeskKind.PAGERDUTY: PagerDutyAdapter,
    DeskKind.SERVICENOW: ServiceNowAdapter,
    DeskKind.JSM: JsmAdapter,
    DeskKind.ZENDESK: ZendeskAdapter,
}


def make_adapter(name: str, settings: DeskSettings) -> DeskAdapter:
    """The adapter for the desk configured as ``[desks.<name>]``."""
    return ADAPTERS[settings.kind](name, settings)
