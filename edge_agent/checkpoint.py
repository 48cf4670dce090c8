"""Model checkpoints: one row per asset, saved incrementally, loaded without executing code.

Store: ``{state_dir}/checkpoints/assets.sqlite3``, table ``assets`` with one row per asset: its
key, the format and model versions, the agent version that wrote it, a sha256 of the state and the
state itself. SQLite in WAL mode with ``synchronous=NORMAL``: a commit survives ``kill -9``; a power
cut may lose the newest commits (those assets resume from their previous checkpoint, minutes of
learning), never tears one (https://www.sqlite.org/wal.html). Only assets that changed since their
last save are written, on a timer and at shutdown, from a writer thread
(:class:`CheckpointWriter`), so no write ever stalls the main loop; the main loop only serialises,
a few assets per loop pass. Alert events do not wait for a checkpoint: they are durable through the
outbox and its alert ledger (:mod:`edge_agent.outbox`).

State format: pickle (protocol 5) of the engine's per-asset state, read back by
:class:`SafeUnpickler`, which resolves only the exact ``(module, name)`` pairs of
:data:`ALLOWED_GLOBALS` — the "Restricting Globals" recipe of the :mod:`pickle` documentation.
Pairs, not module prefixes: ``subprocess.Popen`` or ``numpy.memmap`` are classes too, and calling a
class is all an attacker needs. Anything else (``os.system``, ``builtins.eval``, ``importlib``,
numpy's loaders …) is refused before it is looked up, the asset re-warms and the refusal is
logged; nothing in a checkpoint can run code as the agent. Objects the engine shares between assets
are not stored but referenced by persistent id (:func:`encode`): the detection settings and the
lifecycle policy (the running ones are used on restore), and alert events, which are stored as their
JSON and validated again by the contract on load.

A detector whose state references a global missing from :data:`ALLOWED_GLOBALS` fails
``tests/agent_core/test_checkpoint_safety.py``, which lists what each detector's pickle references
(:func:`pickle_globals`); add the pair here once you have checked that calling it with arbitrary
arguments cannot do harm (no I/O, no import, no eval).

A checkpoint row that is torn, corrupt, refused, of another format or model version, or from an
agent of another major.minor version is discarded: that asset re-warms, the agent starts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import pickle
import pickletools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.errors import CheckpointError
from pdm_common.contracts import AlertEvent
from pdm_common.logs import get_logger

__all__ = [
    "ALLOWED_GLOBALS",
    "FORMAT_VERSION",
    "AssetKey",
    "CheckpointRefused",
    "CheckpointReport",
    "CheckpointStore",
    "CheckpointWriter",
    "SafeUnpickler",
    "SavedBatch",
    "StoredAsset",
    "decode",
    "encode",
    "pickle_globals",
    "validate",
]

FORMAT_VERSION = 2
"""1 was one pickle of the whole engine per file (``engine.ckpt``, loaded unrestricted); 2 is this."""

AssetKey = tuple[str, str]
"""``(site, asset)``."""

_MAX_STATE_BYTES = 32 * 1024 * 1024
"""Far above one asset's state (~70 KiB with a day of plot series); refuses absurd rows unread."""
_ALERT_JSON_MAX = 1 << 20

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    # Standard library value types; their constructors only build values.
    ("collections", "deque"),
    ("datetime", "datetime"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    # numpy arrays: dtype objects and contiguous arrays rebuilt from their bytes (numpy 2 and 1.x names).
    ("numpy", "dtype"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    # The contract's enums (plain value lookups).
    ("pdm_common.contracts", "AssetKind"),
    ("pdm_common.contracts", "SensorStatus"),
    ("pdm_common.contracts", "Severity"),
    ("pdm_common.contracts", "EventType"),
    ("pdm_common.contracts", "AlertStatus"),
    ("pdm_common.contracts", "CommandName"),
    ("pdm_common.contracts", "CommandOutcome"),
    # The asset's command audit trail (AssetState.commands): a pydantic model whose pickle restores
    # its field values by __setstate__, without running validators or any other code.
    ("pdm_common.contracts", "CommandRecord"),
    # Our own state classes: plain attribute containers, no behaviour on construction.
    ("edge_agent.engine", "_Asset"),
    ("edge_agent.lifecycle.machine", "AlertTrack"),
    ("edge_agent.lifecycle.machine", "Phase"),
    ("edge_agent.lifecycle.machine", "Summary"),
    # The detection core (tests/agent_core/test_detector_contract.py lists what each detector references).
    ("edge_agent.detection.detector", "AssetDetector"),
    ("edge_agent.detection.detector", "Finding"),
    ("edge_agent.detection.detector", "MetricDeviation"),
    ("edge_agent.detection.detector", "_Tuning"),
    ("edge_agent.detection.plan", "ChannelPlan"),
    ("edge_agent.detection.plan", "CriterionPlan"),
    ("edge_agent.detection.plan", "KindPlan"),
    ("edge_agent.detection.plan", "OperatingRule"),
    ("edge_agent.detection.protocol", "Evidence"),
    ("edge_agent.detection.regime", "RegimeDetector"),
    ("edge_agent.detection.regime", "RegimeTuning"),
    ("edge_agent.detection.sensors", "SensorTuning"),
    ("edge_agent.detection.sensors", "SensorWatch"),
    ("edge_agent.detection.sensors", "_Channel"),
    ("edge_agent.detection.series", "RecentSeries"),
    ("edge_agent.detection.signatures", "Diagnosis"),
    ("edge_agent.detection.trend", "TrendTracker"),
    ("edge_agent.detection.trend", "TtfEstimate"),
    ("edge_agent.detection.warmup", "WarmupClock"),
    ("edge_agent.detection.zscore", "RobustZScore"),
    # The River detectors (hst, river_linear), when configured: estimator classes rebuilt from their own
    # state (no I/O, no import), the value types they keep, and functools.partial, which HalfSpaceTrees
    # uses as a defaultdict factory; a partial can only wrap another allowed global.
    ("edge_agent.detection.river_models", "HalfSpaceTreesDetector"),
    ("edge_agent.detection.river_models", "RiverResidualDetector"),
    ("river.anomaly.hst", "HalfSpaceTrees"),
    ("river.tree.padded", "PaddedBranch"),
    ("river.tree.padded", "PaddedLeaf"),
    ("river.compose.pipeline", "Pipeline"),
    ("river.preprocessing.scale", "StandardScaler"),
    ("river.linear_model.lin_reg", "LinearRegression"),
    ("river.optim.sgd", "SGD"),
    ("river.optim.schedulers", "Constant"),
    ("river.optim.initializers", "Zeros"),
    ("river.optim.losses", "Squared"),
    ("river.stats.mean", "Mean"),
    ("river.stats.var", "Var"),
    ("river.drift.adwin", "ADWIN"),
    ("river._river_rust.drift", "AdaptiveWindowing"),
    ("river._river_rust.vectordict", "VectorDict"),
    ("collections", "Counter"),
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("builtins", "float"),
    ("builtins", "tuple"),
    ("functools", "partial"),
    ("random", "Random"),
})
"""Every global a checkpoint may reference, as exact ``(module, name)`` pairs (module docstring)."""

_log = get_logger(__name__)


class CheckpointRefused(Exception):
    """Why one asset's checkpoint is not used (it re-warms); never raised out of the store."""


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS` and the engine's persistent references.

    Args:
        data: the pickle.
        refs: objects the pickler replaced by their name (see :func:`encode`).
    """

    def __init__(self, data: bytes, refs: Mapping[str, object]) -> None:
        super().__init__(io.BytesIO(data))
        self._refs = refs

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in ALLOWED_GLOBALS:
            raise CheckpointRefused(f"references {module}.{name}, which a checkpoint may not")
        found = super().find_class(module, name)
        if name == "_frombuffer":
            return functools.partial(_owned_array, found)
        return found

    def persistent_load(self, pid: object) -> object:
        if isinstance(pid, str) and pid in self._refs:
            return self._refs[pid]
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "alert" and isinstance(pid[1], bytes):
            return AlertEvent.from_json(pid[1], max_bytes=_ALERT_JSON_MAX)
        raise CheckpointRefused(f"unknown persistent reference {str(pid)[:80]!r}")


def _owned_array(rebuild: Callable[..., object], *args: object) -> object:
    """An array rebuilt by numpy's ``_frombuffer``, copied so that it owns its data.

    Protocol 5 rebuilds each array as a view of the pickle's bytearray through a memoryview: about
    300 bytes of overhead per array beside the data, some 40 arrays per asset (issue 13). The copy
    keeps the memory layout (``order="K"``), so arithmetic on it gives the same bits.
    """
    return np.array(rebuild(*args), copy=True, order="K")


class _RefPickler(pickle.Pickler):
    def __init__(self, out: io.BytesIO, refs: Mapping[str, object]) -> None:
        super().__init__(out, protocol=5)
        self._by_id = {id(obj): name for name, obj in refs.items()}

    def persistent_id(self, obj: object) -> object:
        name = self._by_id.get(id(obj))
        if name is not None:
            return name
        if isinstance(obj, AlertEvent):
            return ("alert", obj.to_json())
        return None


def encode(state: object, refs: Mapping[str, object]) -> bytes:
    """Serialise one asset's state; objects in ``refs`` (by identity) are stored as their name."""
    out = io.BytesIO()
    _RefPickler(out, refs).dump(state)
    return out.getvalue()


def decode(blob: bytes, refs: Mapping[str, object]) -> object:
    """Rebuild one asset's state with :class:`SafeUnpickler`.

    Raises:
        CheckpointRefused: a forbidden global or reference, or a pickle that does not load.
    """
    try:
        return SafeUnpickler(blob, refs).load()
    except CheckpointRefused:
        raise
    except Exception as exc:  # any unpickling failure means "re-warm", never a crash
        raise CheckpointRefused(f"cannot unpickle: {type(exc).__name__}: {str(exc)[:200]}") from None


def pickle_globals(blob: bytes) -> set[tuple[str, str]]:
    """The ``(module, name)`` globals a pickle references, read without loading it.

    Follows ``GLOBAL`` and ``STACK_GLOBAL`` (whose two strings come from the preceding string or
    memo opcodes), which is how :mod:`pickle` itself writes them; meant for pickles we wrote, to
    check them against :data:`ALLOWED_GLOBALS` (a hostile pickle is stopped by :class:`SafeUnpickler`).
    """
    found: set[tuple[str, str]] = set()
    strings: list[str] = []
    memo: dict[int, object] = {}
    last: object = None
    for op, arg, _pos in pickletools.genops(blob):
        name = op.name
        if name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            found.add((module, attr))
            last = None
        elif name == "STACK_GLOBAL":
            found.add((strings[-2], strings[-1]))
            last = None
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            last = str(arg)
            strings.append(last)
        elif name == "MEMOIZE":
            memo[len(memo)] = last
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(str(arg))] = last
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            last = memo.get(int(str(arg)))
            if isinstance(last, str):
                strings.append(last)
        else:
            last = None
    return found


# --- the store ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredAsset:
    """An asset's checkpoint row as read, before decoding."""

    key: AssetKey
    state: bytes


_SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    site TEXT NOT NULL,
    asset TEXT NOT NULL,
    format INTEGER NOT NULL,
    model TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    state BLOB NOT NULL,
    saved_at REAL NOT NULL,
    PRIMARY KEY (site, asset)
) WITHOUT ROWID;
"""


def _compatible(saved: str, running: str) -> bool:
    return saved.split(".")[:2] == running.split(".")[:2]


class CheckpointStore:
    """The per-asset checkpoint file. Reads on the main thread; writes from :class:`CheckpointWriter`.

    Args:
        path: the SQLite file (its directory must exist).
        model_version: the running detector's ``MODEL_VERSION``; rows of another are discarded.
        agent_version: the running agent's version; rows of another major.minor are discarded.

    Raises:
        CheckpointError: the file cannot be opened or created (the agent then runs without
            checkpoints and says so); a file that is not a checkpoint store is moved aside first.
    """

    def __init__(self, path: Path, *, model_version: str, agent_version: str) -> None:
        self.path = path
        self.model_version = model_version
        self.agent_version = agent_version
        self._lock = threading.Lock()  # sqlite3 connections are not for two threads at once
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
            _log.error("checkpoint.store_corrupt", path=str(path), error=str(exc), moved_to=str(aside),
                       action="every asset re-warms; check the disk (dmesg, SMART)")
            try:
                for suffix in ("", "-wal", "-shm"):
                    if Path(f"{path}{suffix}").exists():
                        Path(f"{path}{suffix}").replace(Path(f"{aside}{suffix}"))
                self._db = self._connect()
            except (OSError, sqlite3.Error) as again:
                raise CheckpointError(f"cannot create checkpoint store {path}: {again}") from again
        except (OSError, sqlite3.Error) as exc:
            raise CheckpointError(f"cannot open checkpoint store {path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM assets").fetchone()
        except sqlite3.Error:
            db.close()
            raise
        return db

    def asset_keys(self) -> list[AssetKey]:
        """Assets with a usable checkpoint; rows of another format, model or agent version are deleted (logged once)."""
        with self._lock:
            rows = self._db.execute("SELECT site, asset, format, model, agent_version FROM assets").fetchall()
        usable: list[AssetKey] = []
        stale: list[AssetKey] = []
        reasons: set[str] = set()
        for site, asset, fmt, model, agent in rows:
            if fmt != FORMAT_VERSION or model != self.model_version:
                stale.append((site, asset))
                reasons.add(f"format {fmt}/model {model}, running {FORMAT_VERSION}/{self.model_version}")
            elif not _compatible(agent, self.agent_version):
                stale.append((site, asset))
                reasons.add(f"written by agent {agent}, running {self.agent_version}")
            else:
                usable.append((site, asset))
        if stale:
            _log.warning("checkpoint.discarded", assets=len(stale), reasons=sorted(reasons),
                         action="these assets re-warm from scratch (expected after a detector upgrade)")
            self.delete(stale)
        return usable

    def load(self, key: AssetKey) -> StoredAsset:
        """Read and verify one row.

        Raises:
            CheckpointRefused: absent, unreadable or failing its checksum.
        """
        try:
            with self._lock:
                row = self._db.execute("SELECT sha256, state FROM assets WHERE site = ? AND asset = ?", key).fetchone()
        except sqlite3.Error as exc:
            raise CheckpointRefused(f"unreadable: {exc}") from None
        if row is None:
            raise CheckpointRefused("absent")
        digest, state = row
        state = bytes(state)
        if hashlib.sha256(state).hexdigest() != digest:
            raise CheckpointRefused("checksum mismatch (torn or corrupted row)")
        return StoredAsset(key, state)

    def save(self, items: Sequence[tuple[AssetKey, bytes]]) -> None:
        """Write rows in one transaction (replacing older ones).

        Raises:
            CheckpointError: nothing was written (disk full, read-only, I/O error).
        """
        now = time.time()
        rows = [(site, asset, FORMAT_VERSION, self.model_version, self.agent_version,
                 hashlib.sha256(state).hexdigest(), state, now) for (site, asset), state in items]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO assets VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise CheckpointError(f"cannot write checkpoints to {self.path}: {exc}") from exc

    def delete(self, keys: Sequence[AssetKey]) -> None:
        """Forget rows (stale versions, refused states) in one transaction; a failure is logged, the rows
        are discarded again later (an autocommitted statement per key was one WAL commit each)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM assets WHERE site = ? AND asset = ?", keys)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                _log.warning("checkpoint.delete_failed", path=str(self.path), error=str(exc),
                             action="nothing to do: the rows are discarded again the next time they are read")

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()


@dataclass(frozen=True, slots=True)
class SavedBatch:
    """What the writer did with one batch: the keys and outbox watermarks, and the error if it failed."""

    items: tuple[tuple[AssetKey, int], ...]
    seconds: float
    error: str | None


class CheckpointWriter:
    """Writes batches of encoded asset states on its own thread; results come back through :meth:`results`.

    Args:
        store: where to write.
    """

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self._todo: queue.SimpleQueue[tuple[list[tuple[AssetKey, bytes, int]], bool] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[SavedBatch] = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def submit(self, batch: list[tuple[AssetKey, bytes, int]]) -> None:
        """Queue ``(key, state, outbox_watermark)`` rows for one transaction."""
        if not batch:
            return
        with self._count_lock:
            self._pending += 1
            self._idle.clear()
        self._todo.put((batch, False))

    def results(self) -> list[SavedBatch]:
        """Batches finished since the last call."""
        out: list[SavedBatch] = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def flush(self, timeout_s: float) -> bool:
        """Wait until every submitted batch is written (or failed); False on timeout."""
        return self._idle.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish what was submitted, stop the thread and close the store."""
        self._todo.put(None)
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self.store.close()

    def _run(self) -> None:
        while (job := self._todo.get()) is not None:
            batch, _ = job
            started = time.perf_counter()
            error = None
            try:
                self.store.save([(key, state) for key, state, _mark in batch])
            except CheckpointError as exc:
                error = str(exc)
            self._done.put(SavedBatch(tuple((key, mark) for key, _s, mark in batch),
                                      time.perf_counter() - started, error))
            with self._count_lock:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()


# --- validation (doctor) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointReport:
    """What :func:`validate` found: how many assets load, and why the others would not."""

    assets: int
    refused: tuple[tuple[AssetKey, str], ...]
    error: str | None = None


class _Placeholder:
    """Stands in for a persistent reference while validating (nothing runs with it)."""


def validate(path: Path, *, model_version: str | None = None, agent_version: str | None = None,
             load: Callable[[bytes, Mapping[str, object]], object] = decode) -> CheckpointReport:
    """Check every row of a checkpoint store the way the agent would load it, without using it.

    Safe on a hostile file: rows are decoded by :class:`SafeUnpickler` (only allowed constructors
    run) with placeholders for the engine's shared objects; the file is opened read-only.

    Args:
        path: the ``assets.sqlite3`` file.
        model_version: also refuse rows of another model version (None: any).
        agent_version: also refuse rows of another agent major.minor (None: any).
        load: the decoder (tests may pass another).
    """
    if not path.exists():
        return CheckpointReport(0, ())
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute("SELECT site, asset, format, model, agent_version, sha256, state FROM assets").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return CheckpointReport(0, (), f"not a readable checkpoint store: {exc}")
    refs: dict[str, object] = {"settings": _Placeholder(), "policy": _Placeholder()}
    refused: list[tuple[AssetKey, str]] = []
    for site, asset, fmt, model, agent, digest, state in rows:
        key = (str(site), str(asset))
        blob = bytes(state)
        if fmt != FORMAT_VERSION or (model_version is not None and model != model_version):
            refused.append((key, f"format {fmt}/model {model}"))
        elif agent_version is not None and not _compatible(str(agent), agent_version):
            refused.append((key, f"written by agent {agent}"))
        elif len(blob) > _MAX_STATE_BYTES or hashlib.sha256(blob).hexdigest() != digest:
            refused.append((key, "checksum mismatch"))
        else:
            try:
                load(blob, refs)
            except CheckpointRefused as exc:
                refused.append((key, str(exc)))
    return CheckpointReport(len(rows), tuple(refused))
