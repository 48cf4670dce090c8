"""What a pickled detector state may reference: the basis of the checkpoint loader's allowlist.

A checkpoint must not be able to run code when it is loaded (issue 14: a crafted pickle was executed).
Detector states are plain by construction (numpy arrays, dataclasses, the detection package's own
classes, River estimators for the River detectors), so a restricted unpickler can allow exactly the
globals listed by :func:`pickle_globals` over every registered detector; the detector contract suite
checks that no state references anything outside :data:`STATE_MODULES`.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

__all__ = ["RIVER_MODULES", "STATE_MODULES", "pickle_globals"]

STATE_MODULES: tuple[str, ...] = (
    "edge_agent.detection.",
    "numpy ",
    "numpy._core.numeric _frombuffer",
    "numpy._core.multiarray _reconstruct",
    "numpy._core.multiarray scalar",
    "collections deque",
    "pdm_common.contracts SensorStatus",
)
"""Globals (``"module name"`` prefixes) the state of the default detectors may reference: the
detection package's own classes, numpy's array and dtype reconstruction, ``deque`` and the sensor
status enum. No callable that could run arbitrary code (``builtins getattr``, ``os``, ``functools``)."""

RIVER_MODULES: tuple[str, ...] = ("river.", "random Random", "collections ", "functools partial", "builtins ")
"""What River estimators' states add (``hst``, ``river_linear``). ``functools.partial`` and ``builtins``
names are callables: a loader that admits River states must list the exact names the suite prints,
never these prefixes wholesale."""


class _Recorder(pickle.Unpickler):
    """Records every global a pickle asks for (our own pickles only: it does load them)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.found: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.found.add(f"{module} {name}")
        return super().find_class(module, name)


def pickle_globals(obj: object) -> set[str]:
    """Every global (``"module qualname"``) that a pickle of ``obj`` references.

    Meant for the agent's own state objects (it unpickles the pickle it makes to see what is looked up).

    >>> sorted(pickle_globals({"a": [1.0, (2, "x")]}))
    []
    """
    recorder = _Recorder(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    recorder.load()
    return recorder.found
