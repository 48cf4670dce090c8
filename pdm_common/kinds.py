"""Machine kinds declared in configuration, shared by the edge agent and the cloud bridge.

A vendor's own kind (a chiller, a screw compressor) is declared once, as ``[kinds.<name>]`` tables
with the schema of :mod:`pdm_common.profiles` (channels with units and words, the operating
condition, faults with their words, parts and checks). Both services read the declarations from the
same place:

* ``kinds_path``: a TOML file holding only ``[kinds.<name>]`` tables, e.g. ``/etc/pdm-edge/kinds.toml``
  installed on every gateway and on the bridge's host, so the agent detects with the same profile the
  bridge words its tickets with;
* inline ``[kinds.<name>]`` tables in the service's own config file (the agent's since the profiles
  were introduced; the bridge's too).

A kind is declared in one of the two, never both (:func:`declarations`). The file is read while the
settings validate, so ``check-config``, ``run`` and ``doctor`` name a broken file or declaration with
the field and the fix (exit status 2), and its content is part of the settings: a reload sees an
edited file as a change of ``kinds_path``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

from pdm_common.contracts import KIND_PATTERN
from pdm_common.errors import ProfileError
from pdm_common.profiles import Profile, parse_declarations

__all__ = ["KindName", "KindsFile", "check_declarations", "declarations", "read_kinds_file"]

KindName = Annotated[str, StringConstraints(pattern=KIND_PATTERN)]
Declarations = dict[KindName, dict[str, Any]]


class KindsFile(BaseModel):
    """A kinds file as read: where it is and its ``[kinds.<name>]`` tables (raw, validated by the profiles)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    kinds: Declarations


def read_kinds_file(value: object) -> object:
    """A ``kinds_path`` setting (a path) as the :class:`KindsFile` it names; anything else unchanged.

    Meant as a ``mode="before"`` field validator, so a problem is reported against ``kinds_path``.

    Raises:
        ValueError: the file cannot be read, is not TOML, or holds anything but ``[kinds.<name>]``
            tables; or a declaration in it is invalid (naming the kind and the field).
    """
    if not isinstance(value, str | Path):
        return value
    path = Path(value)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read the kinds file {path}: {exc.strerror or exc}; create it with "
                         "[kinds.<name>] tables (config/kinds.example.toml) or remove kinds_path") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"the kinds file {path} is not valid TOML: {exc}") from None
    other = sorted(set(doc) - {"kinds"})
    if other or not isinstance(doc.get("kinds", {}), dict):
        raise ValueError(f"the kinds file {path} may hold only [kinds.<name>] tables, not {other or ['kinds']}")
    kinds: dict[str, Any] = doc.get("kinds", {})
    check_declarations(kinds, where=str(path))
    return {"path": path, "kinds": kinds}


def check_declarations(kinds: Mapping[str, Any], *, where: str = "[kinds]") -> dict[str, Profile]:
    """Validate declarations into profiles.

    Raises:
        ValueError: naming the kind, the field and what is wrong, and where it was declared.
    """
    try:
        return parse_declarations(kinds)
    except ProfileError as exc:
        raise ValueError(f"{exc}; fix it in {where}") from None


def declarations(inline: Mapping[str, dict[str, Any]], file: KindsFile | None) -> Declarations:
    """Every declared kind: the file's and the inline ones.

    Raises:
        ValueError: a kind is declared both in the file and inline (declare it once).
    """
    if file is None:
        return dict(inline)
    twice = sorted(set(inline) & set(file.kinds))
    if twice:
        raise ValueError(f"kinds {twice} are declared both in kinds_path ({file.path}) and in this file's [kinds]: "
                         "declare each kind once, in the shared kinds file")
    return {**file.kinds, **inline}
