"""Ground truth of a fleet run: what was injected where and when, for scoring detectors.

The truth file is never published to the agent. A machine fault's ``failure`` is when the unit actually
tripped: the first operating sample whose reading crossed the fault's catalog criterion, after which the
unit is locked out (None: it was still running when the run ended). Benchmarks score lead time as
``failure - first alarm`` on ``machine_faults``, count alarms on ``sensor_faults`` as sensor alarms (never
as machine faults), and count any machine-fault alarm inside an ``operating_events`` window as a false
alarm.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer

from pdm_common.catalog import FaultCode
from pdm_common.contracts import AssetKind, format_ts
from simulators.fleet.errors import FleetError
from simulators.fleet.scenario import OperatingEventType, SensorFaultMode, Trajectory

__all__ = ["AssetTruth", "GroundTruth", "MachineFaultTruth", "OperatingEventTruth", "SensorFaultTruth"]


class _Truth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_serializer("*", when_used="json")
    def _ser(self, value: object) -> object:
        if isinstance(value, datetime):
            return format_ts(value)
        return value


class MachineFaultTruth(_Truth):
    """A machine fault: damage grows from ``onset`` (before the run's start if the unit started degraded).

    Attributes:
        span_days: the fault's time scale drawn for this unit (reference range per fault code).
        nominal_failure: ``onset + span``, where a typical unit in typical weather would trip.
        failure: when this unit tripped (its criterion crossed while operating); None if it had not by the end.
        magnitude: scale of the fault's effects on this unit.
    """

    code: FaultCode
    onset: datetime
    span_days: float
    nominal_failure: datetime
    failure: datetime | None
    trajectory: Trajectory
    magnitude: float = 1.0


class SensorFaultTruth(_Truth):
    """A sensor fault on ``metric`` (``"*"`` for ``dropout_silence``: the whole asset goes quiet).

    ``parameter`` is its size: drift rate per day, bias step, noise factor, spike height in sigmas or scale.
    """

    metric: str
    mode: SensorFaultMode
    start: datetime
    end: datetime
    parameter: float | None = None


class OperatingEventTruth(_Truth):
    """An operating change that is not a fault; ``end`` is None when it lasts to the end of the run."""

    type: OperatingEventType
    start: datetime
    end: datetime | None
    description: str = ""


class AssetTruth(_Truth):
    """Everything injected into one asset."""

    site: str
    asset: str
    kind: AssetKind
    machine_faults: list[MachineFaultTruth] = Field(default_factory=list)
    sensor_faults: list[SensorFaultTruth] = Field(default_factory=list)
    operating_events: list[OperatingEventTruth] = Field(default_factory=list)


class GroundTruth(_Truth):
    """The ground truth of one fleet run (JSON)."""

    scenario: str
    seed: int
    start: datetime
    end: datetime
    sample_period_s: Annotated[int, Field(gt=0)]
    assets: list[AssetTruth]

    def asset(self, name: str) -> AssetTruth:
        """The truth of the asset called ``name``.

        Raises:
            KeyError: no such asset in this run.
        """
        for a in self.assets:
            if a.asset == name:
                return a
        raise KeyError(name)

    def dump(self, path: Path) -> None:
        """Write the truth as indented JSON to ``path``."""
        Path(path).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> GroundTruth:
        """Read a truth file written by :meth:`dump`.

        Raises:
            FleetError: the file is unreadable or not a valid truth document.
        """
        try:
            return cls.model_validate_json(Path(path).read_bytes())
        except OSError as exc:
            raise FleetError(f"{path}: cannot read ground truth ({exc.strerror})") from None
        except ValidationError as exc:
            raise FleetError(
                f"{path}: not a ground-truth document ({exc.error_count()} errors: {exc.errors()[0]['msg']})"
            ) from None
