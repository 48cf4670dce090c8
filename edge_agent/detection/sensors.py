"""Sensor health per channel: stuck, dropped-out, spiking and drifting sensors.

failure-physics.md A3 gives the tells: a stuck sensor's variance collapses to zero; a dropout is a
run of absent values; a spike is one sample long with no persistence; a drift moves one channel
while its physically coupled channels stay put. A channel judged faulty is left out of the machine
score and out of learning, so the detector keeps working on the remaining sensors.

Stuck, dropout and spikes are read off each channel's own readings, so they work for regime
drivers too (which have no residual). Drift needs the residuals of every channel, so the detector
decides it and reports it with :meth:`SensorWatch.set_drift`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pdm_common.contracts import SensorStatus

__all__ = ["SensorWatch"]

_SPIKE_RETURN = 3.0
"""After a spike the reading must come back within 3 sigma of where it was: "one sample long" (A3)."""

_MAX_SPIKES_KEPT = 64
"""Spike times kept per channel; more than enough for any spike_count setting."""

_NOISY_SHARE = 0.5
"""A channel can be called stuck only if, while healthy, its reading changed on most samples; a
set-point such as ``compressor_hz`` (noise sigma 0, catalog.METRICS) legitimately repeats."""

_STUCK_FALSE_RATE = 1e-9
"""Chance that a healthy channel repeats itself for the whole stuck run: with c the share of samples
on which it changes, the run is log(1e-9)/log(1-c) samples (18 at c = 0.7), at most stuck_samples."""

_MIN_STUCK_RUN = 10
_MIN_SEEN = 100
"""Samples a channel must have shown before its change rate and step size are trusted."""

_STEP_HALFLIFE = 1440.0
"""Typical sample-to-sample step is learned over about a day of samples."""


@dataclass
class _Channel:
    last: float | None = None
    same_run: int = 0
    missing_run: int = 0
    seen: int = 0
    changes: int = 0
    step_var: float = 0.0
    before_spike: float | None = None
    pending_spike: datetime | None = None
    spikes: deque[datetime] = field(default_factory=lambda: deque(maxlen=_MAX_SPIKES_KEPT))
    drift: bool = False
    implausible_run: int = 0


class SensorWatch:
    """Tracks each channel of one asset and says which are healthy.

    Args:
        stuck_samples: longest identical run needed to call a noisy channel stuck.
        dropout_samples: absent readings in a row that make a channel dropped out.
        spike_z: jump, in typical sample-to-sample steps, of a single-sample spike.
        spike_count: spikes within ``spike_window`` that flag the channel.
        spike_window: how long a spike counts against its channel.
        plausible: per channel, the readings a working sensor can give; a run of readings outside
            (a decimal slip, a wrong scale) makes the channel faulty, reported as ``drift``.
        noiseless: channels that are set-points, never judged stuck.
    """

    def __init__(
        self,
        *,
        stuck_samples: int,
        dropout_samples: int,
        spike_z: float,
        spike_count: int,
        spike_window: timedelta,
        plausible: dict[str, tuple[float, float]],
        noiseless: frozenset[str] = frozenset(),
    ) -> None:
        self.stuck_samples = stuck_samples
        self.dropout_samples = dropout_samples
        self.spike_z = spike_z
        self.spike_count = spike_count
        self.spike_window = spike_window
        self.plausible = plausible
        self.noiseless = noiseless
        self._ch: dict[str, _Channel] = {}
        self._alpha = 1.0 - math.exp(-math.log(2) / _STEP_HALFLIFE)

    def observe(self, readings: dict[str, float | None], now: datetime, *, learning: bool) -> set[str]:
        """Record one sample's readings; channels seen before and now absent count as missing.

        Args:
            readings: metric -> value, None when the sensor sent null.
            now: the sample time.
            learning: the sample is healthy, so it may teach the channel's change rate and step size.

        Returns:
            Channels that jumped on this sample alone (spike candidates; at most one, since a spike
            is one channel and several channels jumping together is the machine).
        """
        for name in readings.keys() - self._ch.keys():
            self._ch[name] = _Channel()
        jumped: list[str] = []
        for name, ch in self._ch.items():
            value = readings.get(name)
            if value is None:
                ch.missing_run += 1
                continue
            ch.missing_run = 0
            bounds = self.plausible.get(name)
            outside = bounds is not None and not bounds[0] <= value <= bounds[1]
            ch.implausible_run = ch.implausible_run + 1 if outside else 0
            if self._step(name, ch, value, now, learning=learning):
                jumped.append(name)
        return set(jumped) if len(jumped) == 1 else set()

    def _step(self, name: str, ch: _Channel, value: float, now: datetime, *, learning: bool) -> bool:
        last, ch.last = ch.last, value
        if last is None:
            ch.same_run = 1
            return False
        step_sd = math.sqrt(ch.step_var) if ch.seen >= _MIN_SEEN else math.inf
        if ch.pending_spike is not None and ch.before_spike is not None:
            if abs(value - ch.before_spike) < _SPIKE_RETURN * step_sd:
                ch.spikes.append(ch.pending_spike)
            ch.pending_spike = ch.before_spike = None
        if value == last:
            ch.same_run += 1
        else:
            if learning and ch.same_run < self.stuck_samples:
                ch.changes += 1
            ch.same_run = 1
        jump = abs(value - last)
        if jump > self.spike_z * step_sd and step_sd > 0:
            ch.pending_spike, ch.before_spike = now, last
            return True
        if learning:
            ch.seen += 1
            a = max(1.0 / ch.seen, self._alpha)
            ch.step_var = (1.0 - a) * ch.step_var + a * jump * jump
        return False

    def set_drift(self, name: str, drifting: bool) -> None:
        """Mark or clear a one-channel drift found by the detector."""
        ch = self._ch.get(name)
        if ch is not None:
            ch.drift = drifting

    def status(self, name: str, now: datetime) -> SensorStatus:
        """The channel's health now."""
        ch = self._ch.get(name)
        if ch is None:
            return SensorStatus.OK
        if ch.missing_run >= self.dropout_samples:
            return SensorStatus.DROPOUT
        noisy = ch.seen >= _MIN_SEEN and ch.changes > _NOISY_SHARE * ch.seen and name not in self.noiseless
        if noisy and ch.same_run >= self._stuck_run(ch):
            return SensorStatus.STUCK
        if ch.drift or ch.implausible_run >= self.dropout_samples:
            return SensorStatus.DRIFT
        while ch.spikes and now - ch.spikes[0] > self.spike_window:
            ch.spikes.popleft()
        if len(ch.spikes) >= self.spike_count:
            return SensorStatus.SPIKE
        return SensorStatus.OK

    def _stuck_run(self, ch: _Channel) -> int:
        change = min(ch.changes / ch.seen, 0.999)
        run = math.ceil(math.log(_STUCK_FALSE_RATE) / math.log(1.0 - change))
        return max(_MIN_STUCK_RUN, min(run, self.stuck_samples))

    def statuses(self, now: datetime) -> dict[str, SensorStatus]:
        """Health of every channel seen so far, in first-seen order."""
        return {name: self.status(name, now) for name in self._ch}

    def silence(self) -> None:
        """The asset went silent: count every channel as dropped out until it reports again."""
        for ch in self._ch.values():
            ch.missing_run = max(ch.missing_run, self.dropout_samples)

    def reset(self) -> None:
        """Forget everything (after ``reset_baseline``)."""
        self._ch.clear()
