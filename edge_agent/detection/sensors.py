"""Sensor health per channel: stuck, dropped-out, spiking, implausible and drifting sensors.

failure-physics.md A3 gives the tells: a stuck sensor's variance collapses to zero; a dropout is a
run of absent values; a spike is one sample long with no persistence; a drift moves one channel
while its physically coupled channels stay put. A channel judged faulty is left out of the machine
score and out of learning, so the detector keeps working on the remaining sensors.

The rules apply only to channels the profile declares as physical sensors (a set-point, a counter or
a channel learned from the data is not a sensor that can break this way), and the spike rule not to
impulse statistics (kurtosis, envelope: impacts are the machine's). Silence is not a sensor fault: a
channel is missing only on a sample that carries others, and a gap or a restart starts every run and
window afresh (issue 16: a 40-minute gap at night had opened 62 false dropout tickets).

Stuck, dropout and spikes are read off each channel's own readings, so they work for regime drivers
too. Drift needs every channel's residual, so the detector decides it (:meth:`SensorWatch.set_drift`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from edge_agent.detection.plan import KindPlan
from pdm_common.contracts import SensorStatus

__all__ = ["SensorTuning", "SensorWatch"]

_SPIKE_RETURN = 3.0
"""After a spike the reading must come back within 3 typical steps of where it was: "one sample long" (A3)."""

_MAX_SPIKES_KEPT = 64
"""Spike times kept per channel; more than enough for any spike_count setting."""

_NOISY_SHARE = 0.5
"""A channel can be called stuck only if, while healthy, its reading changed on most samples."""

_STUCK_FALSE_RATE = 1e-9
"""Chance that a healthy channel repeats itself for the whole stuck run: with c the share of samples
on which it changes, the run is log(1e-9)/log(1-c) samples (18 at c = 0.7), at most stuck_samples."""

_MIN_STUCK_RUN = 10
_MIN_SEEN = 100
"""Samples a channel must have shown before its change rate and step size are trusted."""

_STEP_HALFLIFE_S = 86400.0
"""The typical sample-to-sample step is learned over about a day."""

_OK = SensorStatus.OK


@dataclass(frozen=True, slots=True)
class SensorTuning:
    """The sensor checks' settings (from ``DetectionSettings``).

    Attributes:
        stuck_samples: longest identical run needed to call a noisy channel stuck.
        dropout_samples: samples in a row without the channel (while others arrive) that make it dropped out.
        spike_z: jump, in typical sample-to-sample steps, of a single-sample spike.
        spike_count: spikes within ``spike_window_s`` that flag the channel.
        spike_window_s: how long a spike counts against its channel.
    """

    stuck_samples: int
    dropout_samples: int
    spike_z: float
    spike_count: int
    spike_window_s: float


@dataclass(slots=True)
class _Channel:
    impulse: bool = False
    plausible: tuple[float, float] | None = None
    noiseless: bool = False
    last: float | None = None
    same_run: int = 0
    missing_run: int = 0
    seen: int = 0
    changes: int = 0
    step_var: float = 0.0
    before_spike: float | None = None
    pending_spike: float | None = None
    spikes: deque[float] | None = None
    """Recent spike times; None until the first (an empty deque is 760 bytes, per channel and asset)."""
    drift: bool = False
    implausible_run: int = 0


class SensorWatch:
    """Tracks each physical sensor channel of one asset and says which are healthy.

    Args:
        plan: the asset's kind; only its declared physical sensors are watched.
        tuning: the checks' settings.
    """

    def __init__(self, plan: KindPlan, tuning: SensorTuning) -> None:
        self.plan = plan
        self.tuning = tuning
        self._ch: dict[str, _Channel] = {}
        self._last_t: float | None = None

    def retune(self, plan: KindPlan, tuning: SensorTuning) -> None:
        """Apply new settings and a new plan; channels no longer declared as sensors stop being watched."""
        self.plan, self.tuning = plan, tuning
        for name in [n for n in self._ch if not plan.channel(n).sensor]:
            del self._ch[name]

    def watched(self, name: str) -> bool:
        """Whether ``name`` is a physical sensor this watch judges."""
        return self.plan.channel(name).sensor

    def observe(self, readings: dict[str, float | None], t: float, *, learning: bool, gap: bool) -> set[str]:
        """Record one sample's readings of the watched channels.

        Args:
            readings: metric -> value (None when the sensor sent null); unwatched channels are ignored.
            t: the sample time, epoch seconds.
            learning: the sample is healthy, so it may teach the channel's change rate and step size.
            gap: the stream was interrupted before this sample: runs restart, no jump counts as a spike.

        Returns:
            Channels that jumped on this sample alone (spike candidates; at most one, since a spike is one
            channel and several channels jumping together is the machine).
        """
        plan = self.plan
        for name in readings:
            if name not in self._ch:
                spec = plan.channel(name)
                if spec.sensor:
                    self._ch[name] = _Channel(impulse=spec.impulse, plausible=spec.plausible, noiseless=spec.noiseless)
        last_t, self._last_t = self._last_t, t
        dt = 0.0 if last_t is None or gap else max(t - last_t, 0.0)
        alpha = 1.0 - math.exp(-math.log(2) * dt / _STEP_HALFLIFE_S) if dt > 0 else 0.0
        present = sum(1 for name in self._ch if readings.get(name) is not None)
        # Missing counts only while the rest of the asset keeps arriving (at least half of its sensors):
        # silence or a partial frame from the PLC is no sensor fault.
        others_arrive = 2 * present >= len(self._ch)
        jumped: list[str] = []
        for name, ch in self._ch.items():
            value = readings.get(name)
            if gap:
                ch.same_run = ch.missing_run = ch.implausible_run = 0
                ch.pending_spike = ch.before_spike = None
            if value is None:
                if others_arrive:
                    ch.missing_run += 1
                continue
            ch.missing_run = 0
            bounds = ch.plausible
            outside = bounds is not None and not bounds[0] <= value <= bounds[1]
            ch.implausible_run = ch.implausible_run + 1 if outside else 0
            if self._step(ch, value, t, alpha, learning=learning, gap=gap):
                jumped.append(name)
        return set(jumped) if len(jumped) == 1 else set()

    def _step(self, ch: _Channel, value: float, t: float, alpha: float, *, learning: bool, gap: bool) -> bool:
        last, ch.last = ch.last, value
        if last is None or gap:
            ch.same_run = 1
            return False
        step_sd = math.sqrt(ch.step_var) if ch.seen >= _MIN_SEEN else math.inf
        if ch.pending_spike is not None and ch.before_spike is not None:
            if abs(value - ch.before_spike) < _SPIKE_RETURN * step_sd:
                if ch.spikes is None:
                    ch.spikes = deque(maxlen=_MAX_SPIKES_KEPT)
                ch.spikes.append(ch.pending_spike)
            ch.pending_spike = ch.before_spike = None
        # A run that already counts as stuck teaches nothing: otherwise its repeats would slowly lower the
        # channel's change rate until the stuck sensor looked like a quiet one again.
        learning = learning and not self._stuck(ch)
        if value == last:
            ch.same_run += 1
        else:
            if learning and ch.same_run < self.tuning.stuck_samples:
                ch.changes += 1
            ch.same_run = 1
        jump = abs(value - last)
        if not ch.impulse and jump > self.tuning.spike_z * step_sd and step_sd > 0:
            ch.pending_spike, ch.before_spike = t, last
            return True
        if learning:
            ch.seen += 1
            a = max(1.0 / ch.seen, alpha)
            ch.step_var = (1.0 - a) * ch.step_var + a * jump * jump
        return False

    def set_drift(self, name: str, drifting: bool) -> None:
        """Mark or clear a one-channel drift found by the detector."""
        ch = self._ch.get(name)
        if ch is not None:
            ch.drift = drifting

    def status(self, name: str, t: float) -> SensorStatus:
        """The channel's health at ``t`` (OK for a channel that is not a watched sensor)."""
        ch = self._ch.get(name)
        if ch is None:
            return _OK
        return self._status(ch, t)

    def _status(self, ch: _Channel, t: float) -> SensorStatus:
        if ch.missing_run >= self.tuning.dropout_samples:
            return SensorStatus.DROPOUT
        if self._stuck(ch):
            return SensorStatus.STUCK
        if ch.drift or ch.implausible_run >= self.tuning.dropout_samples:
            return SensorStatus.DRIFT
        spikes = ch.spikes
        if spikes is None:
            return _OK
        while spikes and t - spikes[0] > self.tuning.spike_window_s:
            spikes.popleft()
        if not spikes:  # all expired (or an empty deque from a checkpoint of before the lazy history)
            ch.spikes = None
        elif len(spikes) >= self.tuning.spike_count:
            return SensorStatus.SPIKE
        return _OK

    def _stuck(self, ch: _Channel) -> bool:
        if ch.same_run < _MIN_STUCK_RUN:  # the common case, decided without a logarithm
            return False
        noisy = ch.seen >= _MIN_SEEN and ch.changes > _NOISY_SHARE * ch.seen and not ch.noiseless
        return noisy and ch.same_run >= self._stuck_run(ch)

    def _stuck_run(self, ch: _Channel) -> int:
        change = min(ch.changes / ch.seen, 0.999)
        run = math.ceil(math.log(_STUCK_FALSE_RATE) / math.log(1.0 - change))
        return max(_MIN_STUCK_RUN, min(run, self.tuning.stuck_samples))

    def statuses(self, t: float) -> dict[str, SensorStatus]:
        """Health of every watched channel seen so far, in first-seen order."""
        return {name: self._status(ch, t) for name, ch in self._ch.items()}

    def restart(self) -> None:
        """The stream was interrupted (silence, a restart): the next sample starts every run afresh."""
        for ch in self._ch.values():
            ch.same_run = ch.missing_run = ch.implausible_run = 0
            ch.pending_spike = ch.before_spike = None
            ch.last = None

    def reset(self) -> None:
        """Forget everything (after ``reset_baseline``)."""
        self._ch.clear()
        self._last_t = None

    def problems(self) -> list[str]:
        """Inconsistencies of a restored state (empty when sound)."""
        out = []
        for name, ch in self._ch.items():
            if min(ch.same_run, ch.missing_run, ch.seen, ch.changes, ch.implausible_run) < 0:
                out.append(f"sensor {name}: negative run or count")
            if not (math.isfinite(ch.step_var) and ch.step_var >= 0):
                out.append(f"sensor {name}: step variance {ch.step_var}")
        return out
