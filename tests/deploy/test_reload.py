"""reload_plan: which settings changes apply on SIGHUP and which need a restart."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from pdm_common.reload import ReloadPlan, reload_plan


class Thresholds(BaseModel):
    model_config = ConfigDict(frozen=True)
    warn: float = 0.9
    crit: float = 0.99


class Mqtt(BaseModel):
    model_config = ConfigDict(frozen=True)
    host: str = "127.0.0.1"
    port: int = 1883


class Cfg(BaseModel):
    model_config = ConfigDict(frozen=True)
    site: str = "oslo-north"
    registry: str = "/etc/pdm/assets.toml"
    thresholds: Thresholds = Thresholds()
    mqtt: Mqtt = Mqtt()
    routing: dict[str, str] = {}


RELOADABLE = {"registry", "thresholds", "routing"}


def test_no_change_is_empty_plan() -> None:
    plan = reload_plan(Cfg(), Cfg(), RELOADABLE)
    assert plan == ReloadPlan()
    assert not plan.changed


def test_reloadable_fields_apply_others_need_restart() -> None:
    new = Cfg(registry="/x.toml", thresholds=Thresholds(warn=0.8), routing={"critical": "pagerduty"},
              mqtt=Mqtt(port=8883))
    plan = reload_plan(Cfg(), new, RELOADABLE)
    assert plan.apply == {"registry", "thresholds", "routing"}
    assert plan.restart_needed == {"mqtt.port"}
    assert plan.changed


def test_nested_path_is_reloadable_alone() -> None:
    new = Cfg(thresholds=Thresholds(warn=0.5, crit=0.5))
    plan = reload_plan(Cfg(), new, {"thresholds.warn"})
    assert plan.apply == {"thresholds.warn"}
    assert plan.restart_needed == {"thresholds.crit"}


def test_top_level_scalar_change_needs_restart() -> None:
    plan = reload_plan(Cfg(), Cfg(site="bergen"), RELOADABLE)
    assert plan.restart_needed == {"site"}
    assert plan.apply == frozenset()


def test_unknown_reloadable_path_is_refused() -> None:
    with pytest.raises(ValueError, match="thresholdz"):
        reload_plan(Cfg(), Cfg(), {"thresholdz"})
    with pytest.raises(ValueError, match=r"site\.x"):
        reload_plan(Cfg(), Cfg(), {"site.x"})


def test_different_models_are_refused() -> None:
    with pytest.raises(TypeError):
        reload_plan(Cfg(), Mqtt(), RELOADABLE)


def test_module_example_runs() -> None:
    import doctest

    import pdm_common.reload

    assert doctest.testmod(pdm_common.reload).failed == 0
