"""DetectionEngine: the facade the agent wires between ingest and the outbox.

Pure and picklable: no sockets, files or clock; every call gets ``now``. It keeps one
:class:`~edge_agent.detection.AssetDetector` per asset (created on the asset's first telemetry, from the
asset's machine profile), one machine :class:`~edge_agent.lifecycle.AlertTrack` per asset and one
track per faulty sensor, and turns their transitions into the wire models of ``pdm_common.contracts``.

Refusals and bounds: a kind with no profile (neither built in nor declared under ``[kinds]``) is
refused, never scored as another kind, and so is a new asset when ``max_assets`` are kept and none
can make room (:attr:`DetectionEngine.last_refusal` says why, for the dead letter). Room is made by
evicting the longest-silent asset that has no active alert and is either not warm yet or silent for
``evict_silent_d``: a flood of made-up asset ids (which never warm) cannot lock a genuine new asset
out, and an asset that reports keeps its place. Samples older than an asset's last are counted and
skipped. :attr:`DetectionEngine.counters` holds every count for the agent's metrics.

AssetState policy: an asset's retained state is emitted when something a dashboard shows changes
(open alerts, sensor health, warm-up finished, silence) and otherwise every
``state_every_samples`` samples (an hour at one sample a minute by default), so the retained
message stays fresh without one publish per sample.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edge_agent.commands import DEFAULT_MAX_SNOOZE_H
from edge_agent.detection.detector import AssetDetector, Finding
from edge_agent.detection.plan import KindPlan, plan_for
from edge_agent.detection.settings import DetectionSettings
from edge_agent.errors import CommandRefused
from edge_agent.lifecycle.machine import AlertTrack, Emit, Phase, Summary, TrackPolicy
from pdm_common.contracts import (
    MAX_COMMAND_RECORDS,
    AgentInfo,
    AlertEvent,
    AlertStatus,
    AssetState,
    Command,
    CommandName,
    CommandOutcome,
    CommandRecord,
    Contributor,
    EventType,
    FaultGuess,
    MetricSeries,
    ModelInfo,
    ProbableFault,
    SensorHealth,
    SensorStatus,
    Severity,
    Snooze,
    Telemetry,
    TimeToFailure,
    format_ts,
    site_of_alert_id,
)
from pdm_common.logs import get_logger
from pdm_common.profiles import SENSOR_FAULT, UNCLASSIFIED, Profile, ProfileRegistry

__all__ = ["MODEL_NAME", "MODEL_VERSION", "AssetKey", "DetectionEngine", "EngineCounters", "Refusal"]

MODEL_NAME = "pdm-detect"
"""The family of models behind ``ModelInfo.name`` (which names the asset's detector: ``regime``, ``hst`` …)."""
MODEL_VERSION = "4"
"""Bump when a detector's state layout or scoring changes: old checkpoints then re-warm."""

MACHINE = "machine"

_SENSOR_CONFIDENCE = {
    # Stuck and dropout are read straight off the data; a lone spike pattern almost so; a drift
    # confined to one channel could still be an early single-channel machine fault.
    SensorStatus.STUCK: 0.95,
    SensorStatus.DROPOUT: 0.95,
    SensorStatus.SPIKE: 0.9,
    SensorStatus.DRIFT: 0.75,
}

_CRITICAL_P10_H = 24.0
"""Failure possible within a day: someone must go today (CUSTOMER.md, the Friday-evening scene)."""
_MAJOR_P50_H = 72.0
"""Failure likely within three days: plan a visit in working hours before the weekend."""
_MAJOR_SCORE = 3.0

_PHASE_OF_STATUS = {AlertStatus.RECOVERING: Phase.RECOVERING, AlertStatus.VERIFYING: Phase.VERIFYING}
"""Lifecycle phase of a track whose newest event had this status (persistence API, adopt)."""

_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a sample was not scored: ``reason`` is the dead-letter reason (``unknown_kind``, ``asset_limit``)."""

    reason: str
    detail: str


@dataclass
class EngineCounters:
    """Running counts for the agent's metrics (each a ``..._total{reason}`` family)."""

    refused: Counter[str] = field(default_factory=Counter)
    """Samples not scored, by reason: ``unknown_kind``, ``asset_limit``."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Samples skipped by time, by reason: ``stale`` (older than the asset's last), ``duplicate``."""
    evicted: Counter[str] = field(default_factory=Counter)
    """Assets evicted to make room, by reason: ``never_warm``, ``silent``."""
    channels_refused: Counter[str] = field(default_factory=Counter)
    """Channel readings refused, by reason: ``channel_limit``."""
    gaps: int = 0
    """Gaps and restarts after which an asset's windows started afresh."""
    clock_steps: int = 0
    """Asset clocks that stepped back and were accepted as a new timeline."""
    rewarmed: Counter[str] = field(default_factory=Counter)
    """Assets reset to warm up again, by reason: ``invalid_state``, ``profile_changed``, ``detector_changed``."""

AssetKey = tuple[str, str]
"""``(site, asset)``."""


@dataclass
class _Asset:
    site: str
    asset: str
    kind: str
    detector: AssetDetector
    machine: AlertTrack
    sensors: dict[str, AlertTrack] = field(default_factory=dict)
    last_events: dict[str, AlertEvent] = field(default_factory=dict)
    last_ts: datetime | None = None
    silent: bool = False
    since_state: int = 0
    state_key: tuple[object, ...] = ()
    score: float = 0.0
    noted: str | None = None
    _finding: Finding | None = None
    # A class-level default (not a factory): engines pickled before the audit trail existed load with an empty one.
    commands: tuple[CommandRecord, ...] = ()

    def tracks(self) -> list[tuple[str, AlertTrack]]:
        return [(MACHINE, self.machine), *self.sensors.items()]

    def active(self) -> bool:
        return any(t.active for _, t in self.tracks())


def _track_policy(s: DetectionSettings) -> TrackPolicy:
    return TrackPolicy(
        debounce_n=s.debounce_n,
        debounce_m=s.debounce_m,
        recovering_after=timedelta(hours=s.recovering_after_h),
        resolve_after=timedelta(hours=s.resolve_after_h),
        verification=timedelta(hours=s.verification_h),
        ttf_change_pct=s.ttf_change_pct,
        min_update_interval=timedelta(hours=s.min_update_interval_h),
    )


def asset_seed(site: str, asset: str) -> int:
    """A stable seed per asset (the same across runs and machines, unlike ``hash``)."""
    return zlib.crc32(f"{site}:{asset}".encode()) & 0x7FFFFFFF


class DetectionEngine:
    """Per-asset detection and alert lifecycle for one gateway.

    Args:
        settings: detection and lifecycle tuning.
        gateway: this gateway's name (``agent.gateway`` in every alert).
        agent_version: the agent's version (``agent.version``; checked when a checkpoint loads).
        profiles: the machine profiles (built-in plus the configuration's ``[kinds]``); built-in only
            when omitted.
    """

    def __init__(self, settings: DetectionSettings, *, gateway: str, agent_version: str,
                 profiles: ProfileRegistry | None = None) -> None:
        self.settings = settings
        self.gateway = gateway
        self.agent_version = agent_version
        self.profiles = profiles or ProfileRegistry.builtin()
        self._assets: dict[tuple[str, str], _Asset] = {}
        self._policy = _track_policy(settings)
        self.counters = EngineCounters()
        self.last_refusal: Refusal | None = None
        self._dirty: set[AssetKey] = set()
        self._plans: dict[str, tuple[Profile, KindPlan]] = {}

    def reconfigure(self, settings: DetectionSettings, profiles: ProfileRegistry | None = None) -> None:
        """Swap the tuning (and the profiles) in place, keeping every learned baseline, open alert and ``event_seq``.

        Thresholds, hysteresis, warm-up and lifecycle timing apply to every asset at once. An asset
        whose profile now gives the model other inputs, or names another detector, re-warms.
        """
        self.settings = settings
        self._policy = _track_policy(settings)
        if profiles is not None:
            self.profiles = profiles
        for a in self._assets.values():
            self._retune(a)

    def _retune(self, a: _Asset) -> None:
        """Apply the running settings and the asset's current profile to ``a``."""
        settings = self.settings
        for _key, track in a.tracks():
            track.retune(self._policy)
        profile = self.profiles.get(a.kind)
        if profile is None:
            return
        merged = profile.for_asset(a.asset)
        name = merged.detector or settings.detector
        if name != a.detector.detector_name:
            a.detector = AssetDetector(self._plan(a.kind, merged), settings, detector=name,
                                       seed=asset_seed(a.site, a.asset))
            self.counters.rewarmed["detector_changed"] += 1
            self._dirty.add((a.site, a.asset))
            _log.warning("asset.rewarm", site=a.site, asset=a.asset, reason="detector_changed", detector=name)
        elif not a.detector.retune(settings, self._plan(a.kind, merged)):
            self.counters.rewarmed["profile_changed"] += 1
            self._dirty.add((a.site, a.asset))
            _log.warning("asset.rewarm", site=a.site, asset=a.asset, reason="profile_changed",
                         action="the kind's regime drivers changed: the asset learns its baseline again")

    # --- facade ------------------------------------------------------------------------------------
    def process(self, tel: Telemetry, now: datetime) -> list[AlertEvent | AssetState]:
        """Score one sample and return the events to publish, in order.

        A refused sample returns nothing and leaves :attr:`last_refusal` set (None otherwise).

        Args:
            tel: a validated sample.
            now: the sample's time; pass ``tel.ts`` (the asset's clock) so replays are exact.
        """
        self.last_refusal = None
        a = self._asset(tel)
        if a is None:
            return []
        det = a.detector
        if not a.silent and a.last_ts is not None and now - a.last_ts >= self._silence(a):
            # The silence a tick during the gap would have noted: the detector restarts the same way
            # whether or not a tick fell inside the gap.
            det.silence()
        was_warm = det.warmup_progress(now.timestamp()) >= 1.0
        verdict = det.observe(tel.metrics, now.timestamp(), alert_active=a.machine.engaged, seq=tel.seq)
        if verdict.skipped is not None:
            self.counters.skipped[verdict.skipped] += 1
            return []
        if verdict.refused_channels:
            self.counters.channels_refused["channel_limit"] += verdict.refused_channels
        if verdict.gap:
            self.counters.gaps += 1
        if verdict.clock_step:
            self.counters.clock_steps += 1
            _log.warning("asset.clock_step", site=a.site, asset=a.asset, ts=now.isoformat(),
                         action="the asset's clock went back; check its time source (NTP)")
        a.last_ts, a.silent = now, False
        a.score, a._finding = verdict.score, None
        out: list[AlertEvent | AssetState] = []
        if verdict.scored:
            emits = a.machine.step(
                anomalous=verdict.anomalous, healthy=verdict.healthy, now=now, summary=self._summary(a)
            )
            out += self._events(a, MACHINE, a.machine, emits, now)
        if verdict.warm:
            # Sensor tracks advance even when the machine score is on hold (a broken regime driver).
            for metric, status in verdict.sensors.items():
                track = a.sensors.get(metric)
                if track is None and status is SensorStatus.OK:
                    continue
                if track is None:
                    track = a.sensors[metric] = AlertTrack(f"{a.site}:{a.asset}", self._policy, scope=metric)
                bad = status is not SensorStatus.OK
                emits = track.step(anomalous=bad, healthy=not bad, now=now, summary=self._sensor_summary(metric))
                out += self._events(a, metric, track, emits, now)
        else:
            self._note_warmup(a)
        a.since_state += 1
        if out or a.since_state >= self.settings.state_every_samples or self._state_changed(a) or (
            not was_warm and verdict.warm
        ):
            out.append(self._state(a, now))
        return out

    def command(
        self, site: str, asset: str, cmd: Command, now: datetime, *, key_id: str | None = None,
        max_snooze: timedelta = timedelta(hours=DEFAULT_MAX_SNOOZE_H),
    ) -> list[AlertEvent | AssetState]:
        """Apply an authenticated service command (snooze, serviced, reset_baseline) to one asset's alerts.

        The command, accepted or refused, is recorded in the asset's audit trail
        (``AssetState.commands``). Authentication is the caller's (:mod:`edge_agent.commands`).

        Args:
            key_id: the key that verified the command's signature (recorded; None when unsigned).
            max_snooze: the longest snooze accepted, from ``now``.

        Raises:
            CommandRefused: ``unknown_asset``, ``alert_id_mismatch`` (the id names another asset),
                ``unknown_alert``, ``no_active_alert`` (snooze), ``snooze_in_past`` or
                ``snooze_beyond_horizon``.
        """
        a = self._assets.get((site, asset))
        if a is None:
            raise CommandRefused("unknown_asset", f"no telemetry seen from {site}/{asset} on this gateway")
        self._dirty.add((site, asset))
        try:
            targets = self._command_targets(a, cmd, now, max_snooze)
        except CommandRefused as refusal:
            self._audit(a, CommandRecord.of(cmd, at=now, key_id=key_id, reason=refusal.reason))
            raise
        out: list[AlertEvent | AssetState] = []
        for key, track in targets:
            if cmd.command is CommandName.SNOOZE and cmd.until is not None:
                emits = track.snooze(cmd.until, now, issued_by=cmd.issued_by, key_id=key_id)
            elif cmd.command is CommandName.SERVICED:
                emits = track.serviced(now)
                if key == MACHINE:
                    a.detector.restart_drift()
            else:
                emits = track.reset(now)
            out += self._events(a, key, track, emits, now)
        if cmd.command is CommandName.RESET_BASELINE:
            a.detector.reset()
            a.sensors.clear()
        self._audit(a, CommandRecord.of(cmd, at=now, key_id=key_id, reason=None))
        out.append(self._state(a, now))
        return out

    def record_command(self, site: str, asset: str, record: CommandRecord) -> None:
        """Add a command refused before it reached the engine (bad signature) to the asset's audit trail.

        No state is published for it (a flood of forged commands must not become a flood of
        retained-state writes); the next state carries the trail.
        """
        a = self._assets.get((site, asset))
        if a is not None:
            self._audit(a, record)

    @staticmethod
    def _command_targets(a: _Asset, cmd: Command, now: datetime, max_snooze: timedelta) -> list[tuple[str, AlertTrack]]:
        targets = a.tracks()
        if cmd.alert_id is not None:
            if site_of_alert_id(cmd.alert_id) != (a.site, a.asset):
                raise CommandRefused("alert_id_mismatch", f"alert {cmd.alert_id} is not one of {a.site}/{a.asset}'s")
            targets = [(k, t) for k, t in targets if t.alert_id == cmd.alert_id]
            if not targets:
                raise CommandRefused("unknown_alert", f"{a.site}/{a.asset} has no alert {cmd.alert_id}")
        if cmd.command is CommandName.SNOOZE and cmd.until is not None:
            if cmd.until <= now:
                raise CommandRefused("snooze_in_past", f"until {format_ts(cmd.until)} is not after now")
            if cmd.until - now > max_snooze:
                raise CommandRefused("snooze_beyond_horizon", f"until {format_ts(cmd.until)} is more than "
                                     f"{max_snooze.total_seconds() / 3600:g} h ahead ([commands] max_snooze_h)")
            targets = [(k, t) for k, t in targets if t.active]
            if not targets:
                raise CommandRefused("no_active_alert", f"{a.site}/{a.asset} has no open alert to snooze")
        return targets

    @staticmethod
    def _audit(a: _Asset, record: CommandRecord) -> None:
        # Refused entries are capped at half the trail, so a flood of forged commands cannot push the
        # accepted ones (what an investigator needs) out of the retained state.
        trail = [*a.commands, record]
        while len(trail) > MAX_COMMAND_RECORDS:
            refused = [i for i, r in enumerate(trail) if r.outcome is CommandOutcome.REFUSED]
            del trail[refused[0] if len(refused) > MAX_COMMAND_RECORDS // 2 else 0]
        a.commands = tuple(trail)

    def tick(self, now: datetime) -> list[AlertEvent | AssetState]:
        """Time-driven transitions: snooze expiry, healthy-period deadlines, silent assets."""
        out: list[AlertEvent | AssetState] = []
        for a in self._assets.values():
            changed = False
            if not a.silent and a.last_ts is not None and now - a.last_ts >= self._silence(a):
                a.silent = changed = True
                a.detector.silence()
                _log.warning("asset.silent", site=a.site, asset=a.asset, silent_s=(now - a.last_ts).total_seconds())
            for key, track in a.tracks():
                summary = self._summary(a) if key == MACHINE else self._sensor_summary(key)
                emits = track.tick(now, summary)
                out += self._events(a, key, track, emits, now)
                changed = changed or bool(emits)
            if changed:
                self._dirty.add((a.site, a.asset))
                out.append(self._state(a, now))
        return out

    @staticmethod
    def _silence(a: _Asset) -> timedelta:
        """How long without a sample makes ``a`` silent."""
        return timedelta(seconds=min(a.detector.gap_after_s(), 366 * 86400.0))

    def open_alerts(self) -> list[AlertEvent]:
        """The latest event of every alert that is not resolved."""
        return [ev for a in self._assets.values() for ev in a.last_events.values()]

    def asset_states(self) -> list[AssetState]:
        """The current state of every known asset."""
        return [self._state(a, a.last_ts) for a in self._assets.values() if a.last_ts is not None]

    def validate(self) -> dict[tuple[str, str], list[str]]:
        """Check every asset's restored state; an invalid one re-warms (only that asset).

        Call after restoring a checkpoint. Open alerts and ``event_seq`` of a re-warmed asset are kept.

        Returns:
            ``(site, asset)`` -> what was wrong, for the assets that were reset.
        """
        bad: dict[tuple[str, str], list[str]] = {}
        for key, a in self._assets.items():
            problems = self._check(a)
            if problems:
                bad[key] = problems
        return bad

    def _check(self, a: _Asset) -> list[str]:
        """Re-warm ``a`` alone if its detector's state is invalid; what was wrong (empty when sound)."""
        try:
            problems = a.detector.problems()
        except Exception as exc:  # a state so broken its own check fails: re-warm it all the same
            problems = [f"state check failed: {exc!r}"]
        if problems:
            profile = self.profiles.get(a.kind)
            plan = self._plan(a.kind, profile.for_asset(a.asset)) if profile is not None else a.detector.plan
            a.detector = AssetDetector(plan, self.settings, detector=a.detector.detector_name,
                                       seed=asset_seed(a.site, a.asset))
            self.counters.rewarmed["invalid_state"] += 1
            self._dirty.add((a.site, a.asset))
            _log.error("asset.rewarm", site=a.site, asset=a.asset, reason="invalid_state",
                       problems="; ".join(problems)[:500],
                       action="the asset learns its baseline again; its open alerts are kept")
        return problems

    def warming(self) -> dict[tuple[str, str], str]:
        """Assets still warming up, with why (for health: a warm-up too short for the model says so)."""
        out = {}
        for key, a in self._assets.items():
            note = a.detector.warmup_note()
            if note is not None:
                out[key] = note
        return out
    # --- persistence API (runtime lane; used by edge_agent/app.py and edge_agent/checkpoint.py) -----
    # Per-asset snapshots of what changed, restore one asset at a time, and reconciliation with the
    # outbox's alert ledger. A snapshot is the asset's live state object: serialise it before the
    # next call into the engine. Shared objects (settings, lifecycle policy) are referenced through
    # shared_refs(), never copied into a snapshot, so a restore picks up the running ones.

    def shared_refs(self) -> dict[str, object]:
        """Objects every asset's state points at, by the name a checkpoint stores instead of them."""
        return {"settings": self.settings, "policy": self._policy}

    def asset_keys(self) -> list[AssetKey]:
        """Every asset the engine holds."""
        return list(self._assets)

    def last_seen(self, key: AssetKey) -> datetime | None:
        """Telemetry time of the asset's newest sample (None: unknown asset or never a sample)."""
        a = self._assets.get(key)
        return None if a is None else a.last_ts

    def take_dirty(self) -> list[AssetKey]:
        """Assets changed since the last call (and still held), forgetting the marks."""
        dirty, self._dirty = self._dirty, set()
        return [k for k in dirty if k in self._assets]

    def mark_dirty(self, keys: Iterable[AssetKey]) -> None:
        """Mark assets for the next save again (their last save failed)."""
        self._dirty.update(keys)

    def snapshot(self, key: AssetKey) -> object | None:
        """The state of one asset to serialise now (None: unknown asset)."""
        return self._assets.get(key)

    def restore(self, key: AssetKey, state: object) -> None:
        """Take one asset's state back from a checkpoint.

        Raises:
            TypeError: ``state`` is not an asset's state, or belongs to another key.
        """
        if not isinstance(state, _Asset) or (state.site, state.asset) != key:
            raise TypeError(f"checkpoint of {key} holds {type(state).__name__}, not that asset's state")
        for _key, track in state.tracks():
            track.retune(self._policy)
        self._assets[key] = state
        # The running settings and profile apply; a state that does not fit them, or is invalid
        # (issue 16: a negative warm-up had made every restart fail), re-warms this asset only.
        if not self._check(state):
            self._retune(state)

    def adopt(self, ev: AlertEvent) -> bool:
        """Bring the alert's track up to ``ev``, the newest event the outbox ledger holds for it.

        The ledger is written with every alert event and the checkpoint only on a timer, so after a
        ``kill -9`` the restored track may be behind: without this, the alert would be re-opened
        under a new id or an ``event_seq`` reused. Returns True when the track changed; False when
        it was already as new, or the asset is not (yet) held.
        """
        a = self._assets.get((ev.site, ev.asset))
        if a is None:
            return False
        key = ev.alert_id.rsplit(":", 1)[-1] if ev.is_sensor_fault else MACHINE
        track = a.machine if key == MACHINE else a.sensors.get(key)
        if track is None:
            if ev.event is EventType.RESOLVED:
                return False
            track = a.sensors[key] = AlertTrack(f"{a.site}:{a.asset}", self._policy, scope=key)
        if track.alert_id == ev.alert_id and track.event_seq >= ev.event_seq:
            return False
        if ev.event is EventType.RESOLVED:
            if track.alert_id != ev.alert_id:
                return False  # the track is already past it (a checkpoint taken after the resolve)
            track.phase, track.event_seq = Phase.NORMAL, ev.event_seq
            track.window.clear()
            track.healthy_since = track.serviced_at = track.snoozed_until = None
            track.finish()
            a.last_events.pop(key, None)
        else:
            if track.alert_id is not None and track.first_seen is not None and track.first_seen > ev.first_seen:
                return False  # the checkpoint knows a newer alert of this track
            track.alert_id, track.event_seq = ev.alert_id, ev.event_seq
            track.first_seen, track.last_seen, track.last_update_at = ev.first_seen, ev.last_seen, ev.emitted_at
            track.phase = _PHASE_OF_STATUS.get(ev.status, Phase.OPEN) if ev.status is not None else Phase.OPEN
            ttf = ev.time_to_failure_h.p50 if ev.time_to_failure_h is not None else None
            track.last_summary = Summary(ev.severity, ev.probable_fault.code, ttf,
                                         frozenset(c.metric for c in ev.contributors[:3]))
            track.reported |= {c.metric for c in ev.contributors}
            a.last_events[key] = ev
        self._dirty.add((a.site, a.asset))
        return True

    # --- internals ---------------------------------------------------------------------------------
    def _asset(self, tel: Telemetry) -> _Asset | None:
        key = (tel.site, tel.asset)
        a = self._assets.get(key)
        if a is not None:
            self._dirty.add(key)
            return a
        profile = self.profiles.get(tel.kind)
        if profile is None:
            self._refuse("unknown_kind", f"kind {tel.kind!r} has no profile; declare it under [kinds.{tel.kind}] "
                         f"with its channels, or send one of {', '.join(self.profiles.kinds())}")
            _log.warning("asset.unknown_kind", site=tel.site, asset=tel.asset, kind=tel.kind,
                         action=f"declare [kinds.{tel.kind}] in the agent configuration")
            return None
        if len(self._assets) >= self.settings.max_assets and not self._make_room(tel.ts):
            self._refuse("asset_limit", f"{self.settings.max_assets} assets are kept and none is silent for "
                         f"{self.settings.evict_silent_d} days")
            _log.warning("asset.over_limit", site=tel.site, asset=tel.asset, max_assets=self.settings.max_assets,
                         refused=self.counters.refused["asset_limit"],
                         action="raise [detection] max_assets or split the gateway")
            return None
        merged = profile.for_asset(tel.asset)
        name = merged.detector or self.settings.detector
        det = AssetDetector(self._plan(tel.kind, merged), self.settings, detector=name,
                            seed=asset_seed(tel.site, tel.asset))
        a = _Asset(tel.site, tel.asset, tel.kind, det, AlertTrack(f"{tel.site}:{tel.asset}", self._policy))
        self._assets[key] = a
        self._dirty.add(key)
        _log.info("asset.new", site=tel.site, asset=tel.asset, kind=tel.kind, detector=name)
        return a

    def _plan(self, kind: str, merged: Profile) -> KindPlan:
        """The detection plan of ``merged``, one object shared by every asset of the kind.

        A plan is immutable and was about 6 KiB per asset when each had its own (issue 13); a restored
        asset drops its checkpoint's copy for this one on retune. An asset with channels of its own
        (``for_asset`` returned a merged copy) gets a plan of its own.
        """
        cached = self._plans.get(kind)
        if cached is not None and cached[0] is merged:
            return cached[1]
        plan = plan_for(merged)
        if self.profiles.get(kind) is merged:  # the kind's own profile; a reload's new one misses the check above
            self._plans[kind] = (merged, plan)
        return plan

    def _refuse(self, reason: str, detail: str) -> None:
        self.last_refusal = Refusal(reason, detail)
        self.counters.refused[reason] += 1

    def _make_room(self, now: datetime) -> bool:
        """Evict one asset if one may go (see the module docstring); True when there is room."""
        silent_for = timedelta(days=self.settings.evict_silent_d)
        best: tuple[datetime, str, tuple[str, str]] | None = None
        for key, a in self._assets.items():
            if a.active() or a.last_ts is None:
                continue
            warm = a.detector.warmup_progress(a.last_ts.timestamp()) >= 1.0
            if warm and now - a.last_ts < silent_for:
                continue
            reason = "silent" if warm else "never_warm"
            if best is None or a.last_ts < best[0]:
                best = (a.last_ts, reason, key)
        if best is None:
            return False
        _, reason, key = best
        del self._assets[key]
        self.counters.evicted[reason] += 1
        _log.info("asset.evicted", site=key[0], asset=key[1], reason=reason)
        return True

    def _note_warmup(self, a: _Asset) -> None:
        note = a.detector.warmup_note()
        if note is not None and note != a.noted and "model of" in note:
            _log.warning("asset.warmup_extended", site=a.site, asset=a.asset, note=note,
                         action="the configured warm-up is shorter than the model needs; it is extended")
        a.noted = note

    def _finding(self, a: _Asset) -> Finding:
        if a._finding is None:
            a._finding = a.detector.finding()
        return a._finding

    def _summary(self, a: _Asset) -> Callable[[], Summary]:
        def build() -> Summary:
            f = self._finding(a)
            ttf = f.ttf
            if ttf is not None and ttf.p10_h <= _CRITICAL_P10_H:
                sev = Severity.CRITICAL
            elif (ttf is not None and ttf.p50_h <= _MAJOR_P50_H) or a.score >= _MAJOR_SCORE:
                sev = Severity.MAJOR
            else:
                sev = Severity.WARNING
            code = f.diagnosis.code if f.diagnosis else UNCLASSIFIED
            top = frozenset(c.metric for c in f.contributors[:3])
            return Summary(sev, code, ttf.p50_h if ttf else None, top)

        return build

    @staticmethod
    def _sensor_summary(metric: str) -> Callable[[], Summary]:
        return lambda: Summary(Severity.WARNING, SENSOR_FAULT, None, frozenset({metric}))

    def _events(self, a: _Asset, key: str, track: AlertTrack, emits: list[Emit], now: datetime) -> list[AlertEvent]:
        out = [self._alert(a, key, track, e, now) for e in emits]
        for ev in out:
            if ev.event is EventType.RESOLVED:
                a.last_events.pop(key, None)
                track.finish()
            else:
                a.last_events[key] = ev
        return out

    def _alert(self, a: _Asset, key: str, track: AlertTrack, emit: Emit, now: datetime) -> AlertEvent:
        det = a.detector
        statuses = det.sensors
        health = [SensorHealth(metric=m, status=st) for m, st in statuses.items()]
        summary = track.last_summary
        if key == MACHINE:
            f = self._finding(a)
            if f.diagnosis is not None:
                fault = ProbableFault(
                    code=f.diagnosis.code,
                    confidence=f.diagnosis.confidence if f.diagnosis.code != UNCLASSIFIED else 0.0,
                    alternatives=[FaultGuess(code=c, confidence=p) for c, p in f.diagnosis.alternatives],
                )
            else:
                fault = ProbableFault(code=UNCLASSIFIED, confidence=0.0)
            contributors = [
                Contributor(metric=c.metric, value=c.value, expected=c.expected, deviation=c.deviation)
                for c in f.contributors
            ]
            ttf = (
                TimeToFailure(p50=f.ttf.p50_h, p10=f.ttf.p10_h, criterion=f.ttf.criterion[:500])
                if f.ttf is not None
                else None
            )
            plotted = [c.metric for c in f.contributors][: self.settings.recent_series]
            expected = {c.metric: c.expected for c in f.contributors}
        else:
            status = statuses.get(key, SensorStatus.OK)
            fault = ProbableFault(code=SENSOR_FAULT, confidence=_SENSOR_CONFIDENCE.get(status, 0.9))
            contributors = [Contributor(metric=key, value=det.last_value(key), expected=det.expected(key),
                                        deviation=det.deviation(key))]
            ttf = None
            plotted = [key]
            expected = {key: det.expected(key)}
        recent = [MetricSeries(metric=m, expected=expected.get(m), points=det.recent(m)) for m in plotted]
        severity = summary.severity if summary is not None else Severity.WARNING
        assert track.alert_id is not None and track.first_seen is not None  # set by AlertTrack._open
        return AlertEvent(
            alert_id=track.alert_id,
            event=emit.event,
            event_seq=track.event_seq,
            site=a.site,
            asset=a.asset,
            kind=a.kind,
            severity=severity,
            score=round(max(a.score, 0.0), 4),
            first_seen=track.first_seen,
            last_seen=track.last_seen or now,
            emitted_at=now,
            status=emit.status,
            note=emit.note,
            probable_fault=fault,
            contributors=contributors,
            time_to_failure_h=ttf,
            sensor_health=health,
            operating_context={k: round(v, 3) for k, v in det.context.items()},
            recent=recent,
            snooze=self._snooze(track) if emit.status is AlertStatus.SNOOZED else None,
            model=ModelInfo(name=det.detector_name, version=MODEL_VERSION, samples_seen=det.samples_seen),
            agent=AgentInfo(gateway=self.gateway, version=self.agent_version),
        )

    @staticmethod
    def _snooze(track: AlertTrack) -> Snooze | None:
        if track.snoozed_until is None:
            return None
        return Snooze(until=track.snoozed_until, issued_by=track.snoozed_by, key_id=track.snoozed_key_id)

    def _state_changed(self, a: _Asset) -> bool:
        key = (
            tuple(sorted(ev.alert_id for ev in a.last_events.values())),
            tuple(sorted(a.detector.sensors.items())),
            a.silent,
        )
        changed = key != a.state_key
        a.state_key = key
        return changed

    def _state(self, a: _Asset, now: datetime | None) -> AssetState:
        ts = now or a.last_ts
        assert ts is not None  # only called for assets that have reported
        a.since_state = 0
        self._state_changed(a)
        det = a.detector
        statuses = det.sensors
        # A silent asset shows every sensor as dropped out on its dashboard; no alert comes of it.
        health = [SensorHealth(metric=m, status=SensorStatus.DROPOUT if a.silent else st) for m, st in statuses.items()]
        return AssetState(
            site=a.site,
            asset=a.asset,
            kind=a.kind,
            ts=ts,
            health_score=round(max(0.0, 1.0 - a.score / 2.0), 3),
            open_alerts=sorted(ev.alert_id for ev in a.last_events.values())[:64],
            warmup_progress=det.warmup_progress(ts.timestamp()),
            samples_seen=det.samples_seen,
            sensor_health=health,
            commands=list(a.commands),
        )
