"""MQTT topic names of DESIGN.md section 2: build and parse, no I/O.

Topic layout (prefix configurable, default ``pdm/v1``)::

    {prefix}/{site}/{asset}/telemetry|alert|state|deadletter|cmd
    {prefix}/{site}/gateway/{gateway}/status
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum

from pdm_common.contracts import is_valid_name
from pdm_common.errors import ContractError

__all__ = ["DEFAULT_PREFIX", "AssetChannel", "ParsedTopic", "Topics"]

DEFAULT_PREFIX = "pdm/v1"

_PARSE_CACHE = 8192
"""Parsed topics kept: a gateway's assets times their channels, with room; refusals are not cached."""


class AssetChannel(StrEnum):
    """The per-asset topic leaves."""

    TELEMETRY = "telemetry"
    ALERT = "alert"
    STATE = "state"
    DEADLETTER = "deadletter"
    CMD = "cmd"


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """A per-asset topic split into its parts."""

    site: str
    asset: str
    channel: AssetChannel


@dataclass(frozen=True, slots=True)
class Topics:
    """Builds and parses the topics under one prefix.

    >>> t = Topics("pdm/v1")
    >>> t.asset("oslo-north", "hp-0042", AssetChannel.ALERT)
    'pdm/v1/oslo-north/hp-0042/alert'
    >>> t.parse("pdm/v1/oslo-north/hp-0042/telemetry").asset
    'hp-0042'
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        levels = self.prefix.split("/")
        if not self.prefix or any(not lv or lv in {"+", "#"} or "+" in lv or "#" in lv for lv in levels):
            raise ValueError(f"topic prefix {self.prefix!r} must be non-empty levels without wildcards")

    def asset(self, site: str, asset: str, channel: AssetChannel) -> str:
        """The topic of ``channel`` for one asset."""
        for name in (site, asset):
            if not is_valid_name(name):
                raise ContractError("invalid_name", f"{name!r} does not match [A-Za-z0-9_-]{{1,64}}")
        return f"{self.prefix}/{site}/{asset}/{channel.value}"

    def all_assets(self, channel: AssetChannel) -> str:
        """Wildcard subscription for ``channel`` of every asset of every site."""
        return f"{self.prefix}/+/+/{channel.value}"

    def shared(self, group: str, channel: AssetChannel) -> str:
        """Shared subscription (MQTT 5 ``$share``) so replicas in ``group`` split the load."""
        if not is_valid_name(group):
            raise ValueError(f"share group {group!r} must match [A-Za-z0-9_-]{{1,64}}")
        return f"$share/{group}/{self.all_assets(channel)}"

    def gateway_status(self, site: str, gateway: str) -> str:
        """Retained online/offline topic of a gateway."""
        for name in (site, gateway):
            if not is_valid_name(name):
                raise ContractError("invalid_name", f"{name!r} does not match [A-Za-z0-9_-]{{1,64}}")
        return f"{self.prefix}/{site}/gateway/{gateway}/status"

    def gateway_link(self, site: str, gateway: str) -> str:
        """Retained ``1``/``0`` of a gateway's Mosquitto bridge to the cloud (its ``notification_topic``)."""
        return self.gateway_status(site, gateway).removesuffix("/status") + "/link"

    @functools.lru_cache(maxsize=_PARSE_CACHE)  # noqa: B019 (Topics instances live as long as the process)
    def parse(self, topic: str) -> ParsedTopic:
        """Split a per-asset topic (valid ones are cached: every message of an asset has the same topic).

        Raises:
            ContractError: ``unknown_topic`` when the shape is wrong, ``invalid_name`` when site or
                asset break the name rule.
        """
        head = self.prefix + "/"
        if not topic.startswith(head):
            raise ContractError("unknown_topic", f"topic {topic[:200]!r} is not under {self.prefix!r}")
        parts = topic[len(head) :].split("/")
        if len(parts) != 3:
            raise ContractError("unknown_topic", f"topic {topic[:200]!r} is not {head}{{site}}/{{asset}}/{{channel}}")
        site, asset, leaf = parts
        try:
            channel = AssetChannel(leaf)
        except ValueError:
            raise ContractError("unknown_topic", f"unknown channel {leaf[:64]!r}") from None
        for name in (site, asset):
            if not is_valid_name(name):
                raise ContractError("invalid_name", f"{name[:80]!r} does not match [A-Za-z0-9_-]{{1,64}}")
        return ParsedTopic(site=site, asset=asset, channel=channel)

    def deadletter_for(self, topic: str) -> str:
        """Where to dead-letter a message that arrived on ``topic``.

        The asset's own dead-letter topic when site and asset can be read from it, else
        ``{prefix}/_invalid/_invalid/deadletter`` so a malformed topic never becomes a publish target.
        """
        head = self.prefix + "/"
        parts = topic[len(head) :].split("/") if topic.startswith(head) else []
        if len(parts) == 3 and is_valid_name(parts[0]) and is_valid_name(parts[1]):
            return f"{self.prefix}/{parts[0]}/{parts[1]}/{AssetChannel.DEADLETTER.value}"
        return f"{self.prefix}/_invalid/_invalid/{AssetChannel.DEADLETTER.value}"
