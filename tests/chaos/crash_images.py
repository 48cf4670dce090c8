"""What a file system may hold after a crash at any write point of a process, rebuilt from a trace.

A store's process runs once under ``strace``; every write, truncate, sync, create, rename and unlink
of a file below its state directory is recorded with its bytes, in order, together with the
acknowledgements the process prints (``ACK`` lines on stdout, the point where a real service would
send a PUBACK or return to its caller). From that one trace :func:`images` rebuilds the files as they
would be found after a crash *between any two of those calls*, under three models:

- ``kill``: the process dies (kill -9, OOM, watchdog) and the kernel keeps everything written: each
  file holds every write before the cut.
- ``power``: the power goes: each file holds what its last completed fsync/fdatasync covered, and
  nothing written after it.
- ``torn``: as ``power``, and then any subset of the 512-byte sectors written since that sync reached
  the disk anyway, in any order (seeded): a disk's write cache reorders and tears unsynced writes.

This is the method of ALICE (Pillai et al., "All File Systems Are Not Created Equal", OSDI 2014):
record the calls once, then construct every crash state the persistence model allows. What it does
not model, said so the figure is not over-read: directory entries (a create, rename or unlink) are
taken as durable at once, and the ``-shm`` file is left out (SQLite rebuilds it from the WAL; it is
shared memory, not data). A ``kill`` image equals the files a real SIGKILL leaves; the suite checks
that against ``strace --inject=…:signal=SIGKILL`` at sampled points.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["Crash", "Model", "Op", "Trace", "images", "kill_at", "materialize", "trace"]

Model = Literal["kill", "power", "torn"]
SECTOR = 512
"""The unit a torn write loses or keeps (the logical sector size of SD cards and most disks)."""

_CALLS = "openat,pwrite64,pwritev,pwritev2,write,writev,fsync,fdatasync,ftruncate,fallocate,unlink,unlinkat," \
         "rename,renameat,renameat2"
_HEX = r"((?:\\x[0-9a-f]{2})*)"
_LINE = re.compile(r"^(?P<call>\w+)\((?P<args>.*)\) += (?P<ret>-?\d+)")
_FD = re.compile(r"^(\d+)<" + _HEX + ">")
_STRING = re.compile(r'"' + _HEX + '"')


@dataclass(frozen=True, slots=True)
class Op:
    """One call that changes a file below the state directory, or one acknowledgement."""

    kind: Literal["write", "truncate", "sync", "create", "unlink", "rename", "ack"]
    path: str = ""
    offset: int = 0
    data: bytes = b""
    size: int = 0
    dest: str = ""
    call: str = ""
    """The system call (``fdatasync``, ``pwrite64`` …) and its ordinal among the process's calls of that name."""
    nth: int = 0


@dataclass(frozen=True, slots=True)
class Trace:
    """The recorded calls of one run and the directory they were made in."""

    root: Path
    ops: tuple[Op, ...]
    stdout: str

    @property
    def acks(self) -> int:
        """Acknowledgements the process printed."""
        return sum(1 for op in self.ops if op.kind == "ack")


@dataclass(slots=True)
class Crash:
    """The files after a crash at ``cut`` (ops ``[0, cut)`` happened) under ``model``.

    ``acked`` operations had been acknowledged; ``durable`` of them must survive the model (every
    file they wrote was synced after their last write, or the model keeps unsynced writes).
    """

    cut: int
    model: Model
    files: dict[str, bytes]
    acked: int
    durable: int
    last_op: Op | None = None


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace("\\x", ""))


def _fd_path(arg: str) -> str | None:
    m = _FD.match(arg.strip())
    return _hex(m.group(2)).decode("utf-8", "surrogateescape") if m else None


def _strings(args: str) -> list[str]:
    return [_hex(s).decode("utf-8", "surrogateescape") for s in _STRING.findall(args)]


def parse(log: str, root: Path) -> list[Op]:
    """The ops of an ``strace -y -xx`` log (one process, no ``-f``) that touch files below ``root``."""
    base = str(root.resolve()) + "/"
    ops: list[Op] = []
    counts: dict[str, int] = {}

    def mine(path: str | None) -> bool:
        return path is not None and path.startswith(base) and not path.endswith("-shm")

    for line in log.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        call, args, ret = m.group("call"), m.group("args"), int(m.group("ret"))
        counts[call] = counts.get(call, 0) + 1
        if ret < 0:
            continue
        nth = counts[call]
        first = args.split(", ")[0]
        fd_path = _fd_path(first)
        if call == "write" and first.startswith("1<"):
            text = _hex(_STRING.findall(args)[0]).decode()
            ops.extend(Op("ack", data=ack.encode()) for ack in text.splitlines() if ack.startswith("ACK"))
            continue
        if call == "openat":
            path = _fd_path(line.rsplit("= ", 1)[1])
            if mine(path) and "O_CREAT" in args:
                ops.append(Op("create", path=str(path), call=call, nth=nth))
                if "O_TRUNC" in args:
                    ops.append(Op("truncate", path=str(path), size=0, call=call, nth=nth))
            continue
        if call in ("unlink", "unlinkat", "rename", "renameat", "renameat2"):
            names = _strings(args)
            if call.startswith("unlink") and names and mine(names[0]):
                ops.append(Op("unlink", path=names[0], call=call, nth=nth))
            elif call.startswith("rename") and len(names) == 2 and (mine(names[0]) or mine(names[1])):
                ops.append(Op("rename", path=names[0], dest=names[1], call=call, nth=nth))
            continue
        if not mine(fd_path):
            continue
        path = str(fd_path)
        if call == "pwrite64":
            data = _hex(_STRING.findall(args)[0])
            offset = int(args.rsplit(", ", 1)[1])
            if len(data) != ret:
                raise AssertionError(f"short or truncated write in the trace: {line[:200]}")
            ops.append(Op("write", path=path, offset=offset, data=data, call=call, nth=nth))
        elif call in ("fsync", "fdatasync"):
            ops.append(Op("sync", path=path, call=call, nth=nth))
        elif call == "ftruncate":
            ops.append(Op("truncate", path=path, size=int(args.rsplit(", ", 1)[1]), call=call, nth=nth))
        else:  # write/writev/pwritev/fallocate on a store file: not modelled, so the harness says so
            raise AssertionError(f"{call} on {path} is not modelled by tests/chaos/crash_images.py")
    return ops


def trace(argv: Sequence[str], root: Path, *, cwd: Path | None = None, timeout_s: float = 120.0) -> Trace:
    """Run ``argv`` (which writes below ``root``) under strace and record its ops."""
    log = root.parent / f"{root.name}.strace"
    done = subprocess.run(_strace(log) + list(argv), capture_output=True, text=True, timeout=timeout_s, check=False,
                          cwd=cwd)
    if done.returncode != 0:
        raise AssertionError(f"traced run failed ({done.returncode}): {done.stderr[-2000:]}")
    return Trace(root, tuple(parse(log.read_text(), root)), done.stdout)


def kill_at(argv: Sequence[str], op: Op, *, cwd: Path | None = None, timeout_s: float = 120.0) -> int:
    """Run ``argv`` again and SIGKILL it on entering the call ``op`` was (same ``call`` and ordinal)."""
    inject = f"inject={op.call}:signal=SIGKILL:when={op.nth}"
    done = subprocess.run(["strace", "-qq", "-o", "/dev/null", "-e", f"trace={op.call}", "-e", inject, *argv],
                          capture_output=True, timeout=timeout_s, check=False, cwd=cwd)
    return done.returncode


def _strace(log: Path) -> list[str]:
    if shutil.which("strace") is None:
        raise AssertionError("strace is needed for the power-loss suite (apt-get install strace)")
    # -y: every descriptor with its path; -xx and a large -s: every written byte, in hex.
    return ["strace", "-qq", "-y", "-xx", "-s", "16777216", "-e", f"trace={_CALLS}", "-o", str(log)]


@dataclass(slots=True)
class _File:
    now: bytearray = field(default_factory=bytearray)
    synced: bytes = b""
    since: list[Op] = field(default_factory=list)
    synced_at: int = -1
    """Index of the file's last sync (an operation is durable once every file it wrote was synced after)."""


def _apply(buf: bytearray, op: Op) -> None:
    if op.kind == "truncate":
        del buf[op.size:]
        buf.extend(b"\0" * (op.size - len(buf)))
        return
    end = op.offset + len(op.data)
    if len(buf) < end:
        buf.extend(b"\0" * (end - len(buf)))
    buf[op.offset:end] = op.data


def _torn(f: _File, rng: random.Random) -> bytes:
    buf = bytearray(f.synced)
    for op in f.since:
        if op.kind == "truncate":
            if rng.random() < 0.5:
                _apply(buf, op)
            continue
        for start in range(0, len(op.data), SECTOR):
            if rng.random() < 0.5:
                _apply(buf, Op("write", offset=op.offset + start, data=op.data[start:start + SECTOR]))
    return bytes(buf)


def images(tr: Trace, cuts: Sequence[int], models: Sequence[Model], seed: int) -> Iterator[Crash]:
    """The crash states at each cut (0 … len(ops)), in order of ``cuts``, under each of ``models``."""
    rng = random.Random(seed)
    files: dict[str, _File] = {}
    # For each acknowledged operation, the last write index per file it touched (its durability needs).
    pending: dict[str, int] = {}
    needs: list[dict[str, int]] = []
    wanted = sorted(set(cuts))
    k = 0
    for cut in range(len(tr.ops) + 1):
        if k < len(wanted) and wanted[k] == cut:
            k += 1
            acked = len(needs)
            for model in models:
                if model == "kill":
                    durable = acked
                    content = {p: bytes(f.now) for p, f in files.items()}
                else:
                    durable = 0
                    for need in needs:
                        if not all(files[p].synced_at > at if p in files else True for p, at in need.items()):
                            break
                        durable += 1
                    content = {p: (f.synced if model == "power" else _torn(f, rng)) for p, f in files.items()}
                yield Crash(cut, model, content, acked, durable, tr.ops[cut - 1] if cut else None)
        if cut == len(tr.ops):
            break
        op = tr.ops[cut]
        if op.kind == "ack":
            needs.append(pending)
            pending = {}
        elif op.kind == "create":
            files.setdefault(op.path, _File())
        elif op.kind == "unlink":
            # A file removed no longer holds anything an operation needs (SQLite removes its WAL only
            # once a checkpoint has synced it into the database); if it did, the view check finds the loss.
            files.pop(op.path, None)
            for need in (*needs, pending):
                need.pop(op.path, None)
        elif op.kind == "rename":
            moved = files.pop(op.path, None)
            if moved is not None:
                files[op.dest] = moved
        elif op.kind == "sync":
            f = files.setdefault(op.path, _File())
            f.synced, f.since, f.synced_at = bytes(f.now), [], cut
        else:
            f = files.setdefault(op.path, _File())
            _apply(f.now, op)
            f.since.append(op)
            pending[op.path] = cut


def materialize(crash: Crash, root: Path, into: Path) -> None:
    """Write ``crash``'s files, recorded below ``root``, below ``into`` (which must be empty)."""
    base = root.resolve()
    into.mkdir(parents=True, exist_ok=True)  # the state directory exists before the store's first start
    for path, data in crash.files.items():
        target = into / Path(path).relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
