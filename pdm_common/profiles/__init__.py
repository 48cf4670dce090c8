"""Machine profiles: each kind of machine described as data, shared by the agent and the bridge.

Built in: ``heat_pump`` and ``pump`` (one module each). A vendor's own kind is declared in
configuration (TOML, :func:`parse_declarations`) and works with no code change; an unknown kind is
never treated as another (:meth:`ProfileRegistry.require`). Importing this package loads neither
numpy nor River (a test checks it), so the bridge can use it for display words and parts.

Typical use::

    from pdm_common.profiles import ProfileRegistry
    registry = ProfileRegistry.with_declared(settings.kinds)
    advice = registry.advice(event.kind, event.probable_fault.code)   # words, parts, checks
    title = f"{registry.kind_words(event.kind, 'no')}: {advice.name_in('no')}"
"""

from pdm_common.profiles.codes import SENSOR_FAULT, UNCLASSIFIED, FaultCode
from pdm_common.profiles.registry import BUILTIN, ProfileRegistry, parse_declarations
from pdm_common.profiles.schema import (
    Advice,
    AssetOverride,
    Channel,
    ChannelRole,
    FailureCriterion,
    Fault,
    Operating,
    Profile,
    Words,
)

__all__ = [
    "BUILTIN",
    "SENSOR_FAULT",
    "UNCLASSIFIED",
    "Advice",
    "AssetOverride",
    "Channel",
    "ChannelRole",
    "FailureCriterion",
    "Fault",
    "FaultCode",
    "Operating",
    "Profile",
    "ProfileRegistry",
    "Words",
    "parse_declarations",
]
