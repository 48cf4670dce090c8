"""The profile contract suite: every machine profile (built-in and a declared generic one) passes it.

A new kind is one profile module (or one ``[kinds.<name>]`` table); this suite says what it is missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import AgentSettings
from edge_agent.detection import classify, plan_for
from pdm_common import catalog
from pdm_common.errors import ConfigError, ProfileError
from pdm_common.profiles import BUILTIN, SENSOR_FAULT, UNCLASSIFIED, ChannelRole, Profile, ProfileRegistry
from pdm_common.settings import load_settings

CHILLER = {
    "words": {"en": "chiller"},
    "operating": {"channel": "compressor_hz", "above": 0.0},
    "channels": {
        "compressor_hz": {"unit": "Hz", "role": "driver", "sensor": False, "normal_low": 0, "normal_high": 120},
        "ambient_temp_c": {"unit": "°C", "role": "driver", "normal_low": -20, "normal_high": 45, "noise_sigma": 0.1},
        "supply_temp_c": {"unit": "°C", "normal_low": 4, "normal_high": 15, "noise_sigma": 0.1},
        "condenser_pressure_bar": {"unit": "bar", "normal_low": 8, "normal_high": 25, "log_scale": True},
        "running": {"role": "flag", "sensor": False},
    },
    "faults": {
        "condenser_fouling": {
            "signature": {"condenser_pressure_bar": 10.0, "supply_temp_c": 3.0},
            "criterion": {"metric": "condenser_pressure_bar", "direction": "above", "threshold": 28.0,
                          "description": "high-pressure trip"},
            "words": {"en": "condenser fouling"},
            "parts": ["coil cleaner"],
            "checks": ["Clean the condenser coil"],
        },
    },
}
"""A vendor kind as an operator declares it under ``[kinds.chiller]``."""

REGISTRY = ProfileRegistry.with_declared({"chiller": CHILLER})
REPO = Path(__file__).resolve().parents[2]
PROFILES = [REGISTRY.require(p.name) for p in BUILTIN] + [REGISTRY.require("chiller")]


@pytest.fixture(params=PROFILES, ids=[p.name for p in PROFILES])
def profile(request: pytest.FixtureRequest) -> Profile:
    """Each profile under contract."""
    p: Profile = request.param
    return p


def test_profile_names_itself_and_its_channels(profile: Profile) -> None:
    assert profile.words.get("en"), "a kind needs an English name for tickets"
    assert profile.measured(), "a kind needs at least one measured channel"
    for name in profile.measured():
        ch = profile.channels[name]
        assert ch.unit, f"{name}: measured channels carry a unit"
        assert ch.normal_low is not None and ch.normal_high is not None, f"{name}: declare the normal range"


def test_faults_are_diagnosable_and_actionable(profile: Profile) -> None:
    plan = plan_for(profile)
    for code, fault in profile.faults.items():
        assert set(fault.signature) <= set(profile.channels), f"{code}: signature names undeclared channels"
        assert fault.words.get("en") and fault.parts and fault.checks, f"{code}: words, parts and checks"
        assert fault.criterion is not None, f"{code}: a failure criterion lets the TTF say when"
        plausible = profile.plausible(fault.criterion.metric)
        assert plausible is not None and plausible[0] <= fault.criterion.threshold <= plausible[1], (
            f"{code}: a machine at its failure criterion must not read as a broken sensor"
        )
        # Each fault's own signature is diagnosed as that fault: no two signatures are indistinguishable.
        diagnosis = classify(plan, fault.signature)
        assert diagnosis is not None and diagnosis.code == code, (code, diagnosis)


def test_operating_condition_reads_drivers_or_flags(profile: Profile) -> None:
    for name in profile.operating.names():
        assert name in profile.channels and profile.channels[name].role is not ChannelRole.MEASURED


def test_plausible_range_contains_the_normal_range(profile: Profile) -> None:
    for name in profile.measured():
        ch = profile.channels[name]
        bounds = profile.plausible(name)
        assert bounds is not None and ch.normal_low is not None and ch.normal_high is not None
        assert bounds[0] < ch.normal_low and ch.normal_high < bounds[1]


def test_profile_round_trips_as_a_declaration(profile: Profile) -> None:
    # The bridge declares vendor kinds from the same TOML tables the agent reads.
    table = profile.model_dump(mode="json", exclude={"name"})
    again = ProfileRegistry.with_declared({"copy_of_it": table}).require("copy_of_it")
    assert again.model_copy(update={"name": profile.name}) == profile


def test_every_channel_is_planned(profile: Profile) -> None:
    plan = plan_for(profile)
    assert set(plan.drivers) == set(profile.drivers())
    assert set(plan.channels) == {n for n, c in profile.channels.items() if c.role is not ChannelRole.FLAG}
    assert plan.operating(dict.fromkeys(profile.operating.names(), 200.0) | dict.fromkeys(profile.flags(), False)) in (
        True, False)


def test_registry_refuses_unknown_kinds_and_falls_back_in_words() -> None:
    reg = ProfileRegistry.builtin()
    assert reg.get("boiler") is None
    with pytest.raises(ProfileError, match=r"\[kinds\.boiler\]"):
        reg.require("boiler")
    assert reg.advice("boiler", UNCLASSIFIED).checks
    assert str(reg.advice("pump", SENSOR_FAULT).name_in("en")).startswith("sensor fault")
    assert reg.advice("pump", "no_such_fault").name_in("en") == "no such fault"
    assert reg.kind_words("heat_pump", "no") == "varmepumpe"
    assert reg.channel_words("pump", "seal_temp_c") == "seal-chamber temperature"
    assert reg.channel_words("chiller", "oil_temp_c") == "oil temp c"


def test_a_declaration_named_like_a_builtin_extends_it() -> None:
    reg = ProfileRegistry.with_declared({"pump": {"channels": {"oil_temp_c": {"unit": "°C"}}, "detector": "zscore"}})
    pump = reg.require("pump")
    assert "oil_temp_c" in pump.channels and "seal_temp_c" in pump.channels
    assert pump.detector == "zscore" and set(pump.faults) == set(ProfileRegistry.builtin().require("pump").faults)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"channels": {"Bad Name": {}}}, "channels"),
        ({"faults": {"x": {"signature": {"a_c": 1.0}, "criterion": {"metric": "a_c", "direction": "above",
                                                                     "threshold": 1, "description": "d"}}}},
         "criterion channel a_c is not declared"),
        ({"operating": {"channel": "load_c"}, "channels": {"load_c": {"unit": "°C"}}}, "measured channel"),
    ],
)
def test_an_invalid_declaration_names_kind_and_field(table: dict[str, object], message: str) -> None:
    with pytest.raises(ProfileError, match=message) as err:
        ProfileRegistry.with_declared({"vendor_x": table})
    assert "kinds.vendor_x" in str(err.value)


def test_catalog_views_are_derived_from_the_profiles() -> None:
    for kind, specs in catalog.METRICS.items():
        profile = ProfileRegistry.builtin().require(kind)
        for spec in specs:
            ch = profile.channels[spec.name]
            assert (spec.unit, spec.normal_low, spec.normal_high, spec.noise_sigma) == (
                ch.unit, ch.normal_low, ch.normal_high, ch.noise_sigma)
        assert all(profile.faults[c].criterion == catalog.FAILURE_CRITERIA[c] for c in catalog.FAULTS_BY_KIND[kind])
    assert catalog.is_operating("pump", {"running": True}) and not catalog.is_operating("heat_pump", {"defrost": True})


def test_importing_the_profiles_loads_neither_numpy_nor_river() -> None:
    code = "import sys, pdm_common.profiles, pdm_common.catalog; print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('numpy', 'river', 'scipy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_kinds_are_declared_in_the_agent_configuration(tmp_path: Path) -> None:
    example = (REPO / "config" / "edge-agent.example.toml").read_text(encoding="utf-8")
    # The example's commented [kinds.chiller] block, uncommented, is a working declaration.
    block = example[example.index("# [kinds.chiller]\n") : example.index("\n[metrics]")]
    uncommented = "\n".join(line[2:] if line.startswith("# ") else line for line in block.splitlines())
    path = tmp_path / "agent.toml"
    path.write_text(example + "\n" + uncommented, encoding="utf-8")
    settings = load_settings(AgentSettings, path)
    chiller = settings.profiles().require("chiller")
    assert chiller.drivers() == ("compressor_hz", "ambient_temp_c") and "condenser_fouling" in chiller.faults
    assert chiller.for_asset("ch-7").detector == "zscore" and "oil_temp_c" in chiller.for_asset("ch-7").channels
    path.write_text(example + '\n[kinds.boiler.channels.flow_c]\nrole = "sensorish"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"kinds"):
        load_settings(AgentSettings, path)
