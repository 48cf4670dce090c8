"""Loading one pydantic-settings model per service from TOML plus ``PDM_`` environment variables.

Precedence, highest first: explicit keyword arguments, ``PDM_*`` environment variables
(nested with ``__``, e.g. ``PDM_MQTT__PORT=8883``), the TOML file, the model's defaults.
The file comes from ``--config``, else ``PDM_CONFIG``, else the service's system path
``/etc/pdm-edge/{edge-agent,cloud-bridge}.toml`` (:func:`locate_config`; the services log which).
A bad value stops start-up with a :class:`~pdm_common.errors.ConfigError` naming the field, the
value and the fix.

Environment names follow the TOML layout for both services: ``[log] level`` is ``PDM_LOG__LEVEL``,
``[mqtt.tls] ca_file`` is ``PDM_MQTT__TLS__CA_FILE``, a top-level key such as ``site`` is ``PDM_SITE``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pdm_common.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "ENV_CONFIG",
    "ConfigLocation",
    "ServiceSettings",
    "config_hash",
    "load_settings",
    "locate_config",
]

ENV_CONFIG = "PDM_CONFIG"
DEFAULT_CONFIG_DIR = Path("/etc/pdm-edge")
"""System configuration directory of both services (the gateway package installs it)."""
_SECRET_WORDS = ("password", "secret", "token", "key", "credential")
_config_path: ContextVar[Path | None] = ContextVar("pdm_config_path", default=None)

S = TypeVar("S", bound="ServiceSettings")


class ServiceSettings(BaseSettings):
    """Base of each service's settings: frozen, unknown keys refused, ``PDM_`` env overrides."""

    model_config = SettingsConfigDict(
        env_prefix="PDM_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then environment, then the TOML file chosen by :func:`load_settings`."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_path.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


@dataclass(frozen=True, slots=True)
class ConfigLocation:
    """The config file a service reads and how it was chosen."""

    path: Path
    origin: Literal["--config", "PDM_CONFIG", "default"]


def locate_config(cli_path: str | Path | None, *, service: str,
                  environ: Mapping[str, str] | None = None) -> ConfigLocation:
    """The config file to read: ``--config``, else ``PDM_CONFIG``, else ``/etc/pdm-edge/<service>.toml``.

    >>> locate_config(None, service="edge-agent", environ={})
    ConfigLocation(path=PosixPath('/etc/pdm-edge/edge-agent.toml'), origin='default')
    >>> locate_config(None, service="edge-agent", environ={"PDM_CONFIG": "/srv/a.toml"}).origin
    'PDM_CONFIG'
    """
    env = os.environ if environ is None else environ
    if cli_path:
        return ConfigLocation(Path(cli_path), "--config")
    if env.get(ENV_CONFIG):
        return ConfigLocation(Path(env[ENV_CONFIG]), "PDM_CONFIG")
    return ConfigLocation(DEFAULT_CONFIG_DIR / f"{service}.toml", "default")




@contextmanager
def _reading(path: Path | None) -> Iterator[None]:
    token = _config_path.set(path)
    try:
        yield
    finally:
        _config_path.reset(token)


def _masked(field_path: str, value: Any) -> Any:
    if any(word in field_path.lower() for word in _SECRET_WORDS):
        return "<redacted>"
    if isinstance(value, dict):  # a section-level error shows the whole section: mask inside it too
        return {k: _masked(f"{field_path}.{k}", v) for k, v in value.items()}
    return value


def _redact(field_path: str, value: Any) -> str:
    text = repr(_masked(field_path, value))
    return text if len(text) <= 120 else text[:117] + "..."


def _field_info(model: type[BaseSettings], loc: tuple[int | str, ...]) -> FieldInfo | None:
    current: Any = model
    info: FieldInfo | None = None
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not isinstance(part, str) or fields is None or part not in fields:
            return info
        info = fields[part]
        current = info.annotation
    return info


def _explain(model: type[BaseSettings], exc: ValidationError, path: Path | None) -> str:
    where = f"in {path}" if path else "(defaults + PDM_* environment)"
    lines = [f"invalid configuration {where}:"]
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        dotted = ".".join(str(p) for p in loc)
        env_name = "PDM_" + "__".join(str(p).upper() for p in loc)
        section = ".".join(str(p) for p in loc[:-1])
        key = str(loc[-1]) if loc else ""
        toml_hint = f"[{section}] {key}" if section else key
        value = "<missing>" if err["type"] == "missing" else _redact(dotted, err.get("input"))
        info = _field_info(model, loc)
        help_text = f" ({info.description})" if info is not None and info.description else ""
        if err["type"] == "extra_forbidden":
            fix = f"remove it, or check its spelling against config/*.example.toml{help_text}"
        else:
            fix = f"set {toml_hint} in the config file or {env_name}{help_text}"
        lines.append(f"  - {dotted or '<root>'} = {value}: {err['msg']}. Fix: {fix}.")
    return "\n".join(lines)


def load_settings(model: type[S], path: Path | None, **overrides: Any) -> S:
    """Build ``model`` from ``path`` (TOML), ``PDM_`` environment variables and ``overrides``.

    Raises:
        ConfigError: the file is missing or unreadable, is not TOML, or a value fails validation;
            the message names every bad field, its value (secrets redacted) and how to fix it.
    """
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist. Fix: copy config/*.example.toml there "
                          "(the pdm-edge package installs it), or pass --config FILE / set PDM_CONFIG")
    try:
        with _reading(path):
            return model(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(model, exc, path)) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


def config_hash(settings: BaseSettings) -> str:
    """A short stable hash of the effective settings, published in the gateway birth message."""
    blob = settings.model_dump_json().encode()
    return hashlib.sha256(blob).hexdigest()[:16]
