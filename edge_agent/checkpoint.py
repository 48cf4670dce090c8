"""Checkpoints of the detection engine: learned baselines, thresholds and open alerts survive restarts.

File layout (all of it written atomically: temp file, fsync, rename, fsync of the directory, so a
power cut leaves either the old or the new checkpoint, never a torn one)::

    PDM-EDGE-CHECKPOINT\\n
    {"format": 1, "model": "1", "agent_version": "0.3.0", "sha256": "<hex>", "bytes": 123}\\n
    <pickle of DetectionEngine>

A checkpoint that is missing, torn, corrupt (sha256 mismatch), of another format or model version,
or from an agent of another major.minor version is logged and :func:`load` returns None: the assets
re-warm instead of the agent crash-looping. The payload is a pickle, so the state directory must be
writable by the agent's user only (the systemd unit's ``StateDirectory`` is 0700).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

from edge_agent.engine import MODEL_VERSION, DetectionEngine
from edge_agent.errors import CheckpointError
from pdm_common.logs import get_logger

__all__ = ["FORMAT_VERSION", "MAGIC", "load", "save"]

MAGIC = b"PDM-EDGE-CHECKPOINT\n"
FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 4096

_log = get_logger(__name__)


def save(path: Path | str, engine: DetectionEngine) -> int:
    """Write ``engine`` to ``path`` atomically; returns the file size in bytes.

    Raises:
        CheckpointError: the checkpoint could not be written; the previous one is left intact.
    """
    target = Path(path)
    payload = pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL)
    header = {
        "format": FORMAT_VERSION,
        "model": MODEL_VERSION,
        "agent_version": engine.agent_version,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "bytes": len(payload),
    }
    blob = MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload
    tmp = target.with_name(target.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {target}: {exc}") from exc
    _log.info("checkpoint.saved", path=str(target), bytes=len(blob))
    return len(blob)


def _compatible(saved: str, running: str) -> bool:
    return saved.split(".")[:2] == running.split(".")[:2]


class _RefusedError(Exception):
    """Why a checkpoint is not used (internal: :func:`load` turns it into a log line and None)."""


def load(path: Path | str, *, agent_version: str | None = None) -> DetectionEngine | None:
    """Read a checkpoint; None (logged) if it is absent, corrupt or incompatible.

    Args:
        path: the checkpoint file.
        agent_version: the running agent's version; a checkpoint from another major.minor is refused.
            None skips that check (format and model versions are always checked).
    """
    target = Path(path)
    try:
        blob = target.read_bytes()
    except FileNotFoundError:
        _log.info("checkpoint.absent", path=str(target))
        return None
    except OSError as exc:
        blob, error = b"", f"unreadable: {exc}"
    else:
        error = ""
    try:
        if error:
            raise _RefusedError(error)
        engine, saved_version = _decode(blob, agent_version)
    except _RefusedError as exc:
        _log.warning("checkpoint.discarded", path=str(target), reason=str(exc), action="assets re-warm from scratch")
        return None
    if agent_version is not None:
        engine.agent_version = agent_version
    _log.info("checkpoint.loaded", path=str(target), agent_version=saved_version, bytes=len(blob))
    return engine


def _decode(blob: bytes, agent_version: str | None) -> tuple[DetectionEngine, str]:
    if not blob.startswith(MAGIC):
        raise _RefusedError("not a checkpoint file (bad magic)")
    end = blob.find(b"\n", len(MAGIC), len(MAGIC) + _MAX_HEADER_BYTES)
    if end < 0:
        raise _RefusedError("header missing or too long")
    try:
        header = json.loads(blob[len(MAGIC) : end])
    except ValueError:
        raise _RefusedError("header is not JSON") from None
    if not isinstance(header, dict):
        raise _RefusedError("header is not an object")
    payload = blob[end + 1 :]
    if header.get("format") != FORMAT_VERSION or header.get("model") != MODEL_VERSION:
        raise _RefusedError(
            f"format {header.get('format')}/model {header.get('model')} is not {FORMAT_VERSION}/{MODEL_VERSION}"
        )
    saved_version = str(header.get("agent_version"))
    if agent_version is not None and not _compatible(saved_version, agent_version):
        raise _RefusedError(f"written by agent {saved_version}, running {agent_version}")
    if header.get("bytes") != len(payload) or header.get("sha256") != hashlib.sha256(payload).hexdigest():
        raise _RefusedError("checksum mismatch (torn or corrupted file)")
    try:
        engine = pickle.loads(payload)
    except Exception as exc:  # any unpickling failure means "re-warm", never a crash
        raise _RefusedError(f"cannot unpickle: {type(exc).__name__}: {exc}") from None
    if not isinstance(engine, DetectionEngine):
        raise _RefusedError(f"holds a {type(engine).__name__}, not a DetectionEngine")
    return engine, saved_version
