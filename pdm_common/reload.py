"""Which settings changes a running service may apply on SIGHUP, and which need a restart.

Pure: compares two already-validated settings models, no file or process access. The service
loads the new file itself (``load_settings``), calls :func:`reload_plan`, applies ``plan.apply``
and logs ``plan.restart_needed`` as "restart needed" (it keeps running on the old values for those).

Field paths are dotted (``"detector.thresholds"``). A path listed in ``reloadable`` covers
everything below it; a changed field that no listed path covers needs a restart. Nested models
are compared field by field, so changing ``mqtt.port`` names ``mqtt.port``, not all of ``mqtt``.

>>> from pydantic import BaseModel
>>> class Desk(BaseModel):
...     url: str = "https://desk"
...     timeout_s: float = 5.0
>>> class Cfg(BaseModel):
...     site: str = "a"
...     desk: Desk = Desk()
>>> plan = reload_plan(Cfg(), Cfg(site="b", desk=Desk(timeout_s=9)), {"desk.timeout_s"})
>>> sorted(plan.apply), sorted(plan.restart_needed)
(['desk.timeout_s'], ['site'])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydantic import BaseModel

__all__ = ["ReloadPlan", "reload_plan"]


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The outcome of comparing the running settings with the newly loaded ones.

    Attributes:
        apply: dotted paths of changed fields the service applies in place.
        restart_needed: dotted paths of changed fields that take effect only after a restart.
    """

    apply: frozenset[str] = field(default_factory=frozenset)
    restart_needed: frozenset[str] = field(default_factory=frozenset)

    @property
    def changed(self) -> bool:
        """True when the new settings differ from the running ones at all."""
        return bool(self.apply or self.restart_needed)


def reload_plan(old: BaseModel, new: BaseModel, reloadable: Iterable[str]) -> ReloadPlan:
    """Split the differences between ``old`` and ``new`` into live-applicable and restart-only.

    Args:
        old: the settings the service runs with.
        new: the settings just loaded from the (edited) config file; same model class as ``old``.
        reloadable: dotted field paths the service knows how to swap in safely.

    Returns:
        The plan; both sets are empty when nothing changed.

    Raises:
        TypeError: ``old`` and ``new`` are different model classes.
        ValueError: a ``reloadable`` path names no field of the model (a typo would otherwise
            silently turn a reloadable field into a restart-only one).
    """
    if type(old) is not type(new):
        raise TypeError(f"cannot compare {type(old).__name__} with {type(new).__name__}")
    allowed = frozenset(reloadable)
    unknown = {path for path in allowed if not _has_path(type(old), path.split("."))}
    if unknown:
        raise ValueError(f"reloadable paths name no settings field: {sorted(unknown)}")
    changes = list(_changes(old, new, "", allowed))
    apply = {path for path, live in changes if live}
    restart = {path for path, live in changes if not live}
    return ReloadPlan(apply=frozenset(apply), restart_needed=frozenset(restart))


def _has_path(model: type[BaseModel], parts: list[str]) -> bool:
    head, *rest = parts
    info = model.model_fields.get(head)
    if info is None:
        return False
    if not rest:
        return True
    sub = info.annotation
    return isinstance(sub, type) and issubclass(sub, BaseModel) and _has_path(sub, rest)


def _changes(old: BaseModel, new: BaseModel, prefix: str, allowed: frozenset[str]) -> Iterator[tuple[str, bool]]:
    """Yield ``(path, reloadable)`` for each changed field, descending into nested models."""
    for name in type(old).model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        path = f"{prefix}{name}"
        if path in allowed:
            yield path, True
        elif isinstance(before, BaseModel) and type(before) is type(after):
            yield from _changes(before, after, f"{path}.", allowed)
        else:
            yield path, False
