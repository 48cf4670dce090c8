"""A checkpoint cannot execute code: exact allowlist of globals, hostile rows refused, one re-warm each.

Issue 14.4: a checkpoint with a valid header and checksum around a malicious pickle used to run on
load. Every row is now loaded by edge_agent.checkpoint.SafeUnpickler, which resolves only the exact
(module, name) pairs of ALLOWED_GLOBALS.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_agent import checkpoint
from edge_agent.checkpoint import ALLOWED_GLOBALS, CheckpointRefused, CheckpointStore
from edge_agent.doctor import check_checkpoint_contents
from edge_agent.engine import MODEL_VERSION, DetectionEngine
from pdm_common.doctor import Status
from tests.agent_core.conftest import alerts, feed, new_engine
from tests.agent_core.synthetic import HeatPumpStream, leak, stuck

MARKER = "pdm-checkpoint-pwned"


@pytest.fixture(scope="module")
def varied_engine() -> DetectionEngine:
    """Assets in every state a checkpoint meets: warming up, warm, a machine alert open, a sensor fault."""
    engine = new_engine()
    assert alerts(feed(engine, HeatPumpStream(injections=[leak(24 * 2, 3.0)]), 24 * 3.5))
    assert alerts(feed(engine, HeatPumpStream(asset="hp-stuck", seed=3, injections=[stuck("flow_temp_c", 30)]), 40))
    feed(engine, HeatPumpStream(asset="hp-young", seed=5), 2)
    return engine


def test_the_allowlist_covers_every_global_an_asset_references(varied_engine: DetectionEngine) -> None:
    """Fails when a detector starts referencing a global the allowlist lacks: add it after review."""
    refs = varied_engine.shared_refs()
    used: set[tuple[str, str]] = set()
    for key in varied_engine.asset_keys():
        blob = checkpoint.encode(varied_engine.snapshot(key), refs)
        used |= checkpoint.pickle_globals(blob)
        checkpoint.decode(blob, refs)  # and it loads through the restricted unpickler
    missing = sorted(used - ALLOWED_GLOBALS)
    assert not missing, (f"asset state references {missing}: check each cannot do harm when called with "
                         "arbitrary arguments, then add it to edge_agent.checkpoint.ALLOWED_GLOBALS")
    # Shared settings and alert events travel as persistent references, not as pickled models.
    assert not any(module.startswith("pydantic") or name in ("DetectionSettings", "AlertEvent")
                   for module, name in used)


def test_allowlist_names_exact_pairs_that_exist() -> None:
    import importlib

    for module, name in ALLOWED_GLOBALS:
        if module.startswith("numpy.core.") and int(np.__version__.split(".")[0]) >= 2:
            continue  # numpy 1.x spelling (a deprecated alias in 2.x), kept for gateways still on 1.26
        assert hasattr(importlib.import_module(module), name), f"{module}.{name} does not exist"


class _Reduce:
    """Pickles as a call of ``func(*args)``: what every pickle gadget comes down to."""

    def __init__(self, func: Callable[..., object], *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return self.func, self.args


def _hostile(tmp_path: Path) -> dict[str, bytes]:
    marker = str(tmp_path / MARKER)
    import builtins
    import importlib

    return {
        "os.system": pickle.dumps(_Reduce(os.system, f"touch {marker}")),
        "builtins.eval": pickle.dumps(_Reduce(builtins.eval, f"open({marker!r}, 'w')")),
        "builtins.exec": pickle.dumps(_Reduce(builtins.exec, f"open({marker!r}, 'w')")),
        "subprocess.Popen": pickle.dumps(_Reduce(subprocess.Popen, ["touch", marker])),
        "importlib.import_module": pickle.dumps(_Reduce(importlib.import_module, "antigravity")),
        "numpy.memmap": pickle.dumps(_Reduce(np.memmap, marker, np.uint8, "w+", 0, (16,))),
        "numpy.load": pickle.dumps(_Reduce(np.load, marker)),
        "builtins.getattr": pickle.dumps(_Reduce(getattr, _Reduce(importlib.import_module, "os"), "system")),
        # An allowed class wrapped around a forbidden call still fails at the forbidden global.
        "nested": pickle.dumps([np.dtype("f8"), _Reduce(os.system, f"touch {marker}")]),
    }


@pytest.mark.parametrize("gadget", ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen",
                                    "importlib.import_module", "numpy.memmap", "numpy.load", "builtins.getattr",
                                    "nested"])
def test_hostile_pickles_are_refused_before_anything_runs(tmp_path: Path, gadget: str) -> None:
    blob = _hostile(tmp_path)[gadget]
    with pytest.raises(CheckpointRefused, match="may not"):
        checkpoint.decode(blob, {})
    assert not (tmp_path / MARKER).exists(), "the hostile checkpoint ran code"


def test_unknown_persistent_reference_is_refused() -> None:
    class _Pid(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return "secret" if obj == "x" else None

    import io

    out = io.BytesIO()
    _Pid(out).dump(["x"])
    with pytest.raises(CheckpointRefused, match="persistent reference"):
        checkpoint.decode(out.getvalue(), {"settings": object()})


def _plant(store: CheckpointStore, key: tuple[str, str], blob: bytes) -> None:
    """Write a row as an attacker with write access to the state directory would: valid checksum."""
    store.save([(key, blob)])
    db = sqlite3.connect(store.path)
    db.execute("UPDATE assets SET sha256 = ? WHERE site = ? AND asset = ?", (hashlib.sha256(blob).hexdigest(), *key))
    db.commit()
    db.close()


def test_a_hostile_row_costs_one_asset_its_warm_up_and_nothing_else(tmp_path: Path,
                                                                     varied_engine: DetectionEngine) -> None:
    store = CheckpointStore(tmp_path / "assets.sqlite3", model_version=MODEL_VERSION, agent_version="0.3.0")
    refs = varied_engine.shared_refs()
    store.save([(k, checkpoint.encode(varied_engine.snapshot(k), refs)) for k in varied_engine.asset_keys()])
    for n, blob in enumerate(_hostile(tmp_path).values()):
        _plant(store, ("site-a", f"evil-{n}"), blob)
    report = checkpoint.validate(store.path, model_version=MODEL_VERSION)  # what doctor shows
    assert {key[1] for key, _why in report.refused} == {f"evil-{n}" for n in range(len(_hostile(tmp_path)))}
    fresh = DetectionEngine(varied_engine.settings, gateway="gw-test", agent_version="0.3.0")
    refused = 0
    for key in store.asset_keys():
        try:
            fresh.restore(key, checkpoint.decode(store.load(key).state, fresh.shared_refs()))
        except CheckpointRefused:
            refused += 1
    assert refused == len(_hostile(tmp_path))
    assert sorted(fresh.asset_keys()) == sorted(varied_engine.asset_keys())
    assert not (tmp_path / MARKER).exists()
    verdict = check_checkpoint_contents(store.path)  # `edge-agent doctor`
    assert verdict.status is Status.WARN and f"{refused} of {refused + 3}" in verdict.detail
    assert not (tmp_path / MARKER).exists()


def test_a_row_of_another_asset_is_refused(varied_engine: DetectionEngine) -> None:
    keys = varied_engine.asset_keys()
    blob = checkpoint.encode(varied_engine.snapshot(keys[0]), varied_engine.shared_refs())
    fresh = new_engine()
    with pytest.raises(TypeError, match="holds"):
        fresh.restore(keys[1], checkpoint.decode(blob, fresh.shared_refs()))
