"""The detector protocol: what every model behind the agent's per-asset detector implements.

One sample at a time, River-style: :meth:`Detector.score_one` judges the sample *before*
:meth:`Detector.learn_one` may learn from it (a model must never see the answer before it decides).
Time comes with the sample (epoch seconds); a detector never reads a clock. A detector is a plain
object: it pickles and restores (numpy arrays, dataclasses, River estimators only), the same seed gives
the same scores, and a channel that is missing on a sample or appears late is tolerated.

The per-asset shell (:class:`~edge_agent.detection.detector.AssetDetector`) does everything that does
not depend on the model: operating state, timestamps, sensor health, the machine-versus-sensor rule,
diagnosis, time to failure and the plotted series. A detector only says how abnormal a sample is,
per channel where it can (:class:`Evidence`), as one number where it cannot.

Adding a detector is one module with a class that satisfies :class:`Detector` and takes
``(plan, settings, seed=…)``, plus its line in :data:`edge_agent.detection.models.DETECTORS`; the contract
suite (``tests/agent_core/test_detector_contract.py``) runs over every registered detector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from edge_agent.detection.plan import KindPlan
    from edge_agent.detection.settings import DetectionSettings

__all__ = ["BoolArray", "Detector", "Evidence", "FloatArray", "Sample", "Score"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Sample:
    """One operating sample as a detector sees it.

    Attributes:
        t: the sample's time, epoch seconds.
        values: numeric channels present on this sample (drivers and measured channels).
        excluded: channels the sensor checks call faulty: neither scored nor learned.
        run_s: seconds since the machine last started operating (start-up transients).
        frost: estimated frost load of a heat pump's outdoor coil, 0..1 (0 for other kinds).
        gap: the stream was interrupted (a gap or a restart) just before this sample: windows that
            smooth over time start afresh.
        fresh: channels whose sensor fault just ended: what their windows accumulated while faulty was
            the sensor's, so they start afresh too (a x10 slip leaves hundreds of sigmas that would
            otherwise decay over days into a machine alert).
    """

    t: float
    values: Mapping[str, float]
    excluded: frozenset[str] = frozenset()
    run_s: float = 0.0
    frost: float = 0.0
    gap: bool = False
    fresh: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Evidence:
    """Per-channel evidence of one sample, aligned with ``names``.

    ``point`` and ``drift`` are signed and in threshold units (1 = the channel alone reaches its
    threshold); ``valid`` marks channels that were present, healthy and scored. ``value`` and
    ``expected`` are in the channel's unit (NaN when unknown); ``point_sigmas`` and ``drift_sigmas``
    are the same deviations in the model's own sigmas, as shown to people.
    """

    names: Sequence[str]
    point: FloatArray
    drift: FloatArray
    valid: BoolArray
    value: FloatArray
    expected: FloatArray
    point_sigmas: FloatArray
    drift_sigmas: FloatArray

    def sigmas(self) -> FloatArray:
        """Per channel, the deviation in sigmas of whichever evidence (point or drift) is stronger."""
        out: FloatArray = np.where(np.abs(self.drift) >= np.abs(self.point), self.drift_sigmas, self.point_sigmas)
        return out

    def residual(self) -> FloatArray:
        """Reading minus expectation, in the channel's unit (NaN where either is unknown)."""
        out: FloatArray = self.value - self.expected
        return out


@dataclass(frozen=True, slots=True)
class Score:
    """A detector's judgement of one sample.

    Attributes:
        scored: the detector is warm and trusts its judgement of this sample (False during warm-up
            and where the sample lies outside what it has learned, e.g. a never-seen regime).
        value: the sample's score in threshold units, 1 at the threshold; for models with
            per-channel evidence the shell combines the channels itself and this is their maximum.
        evidence: per-channel evidence, or None for models that give one number only.
    """

    scored: bool
    value: float = 0.0
    evidence: Evidence | None = None
    novel: bool = field(default=False)
    """The sample lies outside what the model has learned (it will learn it, not judge it)."""


@runtime_checkable
class Detector(Protocol):
    """The model of one asset. See the module docstring for the contract."""

    def score_one(self, sample: Sample) -> Score:
        """Judge ``sample`` with what has been learned so far (no learning here)."""

    def learn_one(self, sample: Sample, score: Score, *, allowed: bool) -> None:
        """Learn from ``sample`` after it was scored.

        Args:
            sample: the sample just scored.
            score: what :meth:`score_one` returned for it.
            allowed: False while an alert is suspect or open: a model that learns the fault as normal
                would close the alert and hide the next one (river-notes.md). Warm-up statistics may
                still advance; what the model treats as normal must not.
        """

    def warmup_progress(self, t: float) -> float:
        """Share of the warm-up done at time ``t``, 0..1; 1 once the detector scores."""

    def warmup_note(self) -> str | None:
        """Why the warm-up is not finished (e.g. too few samples for the model), for health; None when warm."""

    def retune(self, settings: DetectionSettings, plan: KindPlan | None = None) -> bool:
        """Apply new settings (and the kind's new plan) keeping what was learned.

        Returns False when ``plan`` changes the model's inputs so that what was learned does not fit;
        the caller then builds a new detector (the asset re-warms).
        """

    def restart(self) -> None:
        """Forget accumulated deviation (after a service visit); what is normal stays learned."""

    def problems(self) -> list[str]:
        """What is wrong with this detector's state (empty when sound): checked after a restore."""


def channel_table(names: Sequence[str], values: Mapping[str, float]) -> FloatArray:
    """``values`` in the order of ``names``, NaN where absent (a helper for detectors)."""
    return np.array([values.get(n, np.nan) for n in names], dtype=np.float64)
