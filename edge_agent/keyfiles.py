"""Reading the agent's key files at start-up (the command senders' keys and the gateway's signing key)
and opening the command replay ledger.

The only I/O behind :mod:`edge_agent.commands`. A key file that is missing, unreadable or empty stops
start-up with a :class:`~pdm_common.errors.ConfigError` naming the field and the fix (exit 2), never a
traceback; secrets themselves are never logged. The replay ledger
(:mod:`edge_agent.command_ledger`, ``{state_dir}/commands.sqlite3``) keeps the ids of accepted
commands across restarts.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from edge_agent.command_ledger import COMMAND_LEDGER, DurableReplayGuard
from edge_agent.commands import AlertSigner, CommandGate
from edge_agent.config import AgentSettings
from pdm_common.errors import ConfigError
from pdm_common.logs import get_logger
from pdm_common.signing import decode_secret
from pdm_common.topics import Topics

__all__ = ["alert_signer", "command_gate", "read_secret"]

_log = get_logger(__name__)

def read_secret(path: Path, field: str) -> str:
    """The secret held in ``path`` (surrounding whitespace stripped).

    Raises:
        ConfigError: the file is missing, unreadable, empty or not a usable secret; names ``field``.
    """
    try:
        secret = path.read_text(encoding="utf-8").strip()
        decode_secret(secret)
    except OSError as exc:
        raise ConfigError(f"{field} = {str(path)!r}: cannot read the key file ({exc.strerror or exc}). Fix: create "
                          "it readable by the agent's user, or correct the path") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{field} = {str(path)!r}: not a usable secret ({exc}). Fix: write one line, whsec_ "
                          "followed by base64, or a passphrase") from None
    return secret

def command_gate(settings: AgentSettings) -> CommandGate:
    """The command gate of ``[commands]``, with every sender key read and the replay ledger open.

    Raises:
        ConfigError: a key file cannot be read.
    """
    c = settings.commands
    keys = {key_id: read_secret(path, f"commands.keys.{key_id}") for key_id, path in c.keys.items()}
    if not c.require_signature:
        _log.warning("commands.unsigned_accepted", action="[commands] require_signature = false: any client that "
                     "may publish on a cmd topic can snooze or reset assets; set it true and configure keys")
    elif not keys:
        _log.info("commands.no_keys", detail="no [commands] keys configured: every command is refused and audited")

    replay = DurableReplayGuard(settings.state_dir / COMMAND_LEDGER, window_s=2 * c.tolerance_s, now_s=time.time())
    return CommandGate(Topics(settings.mqtt.topic_prefix), keys=keys, require_signature=c.require_signature,
                       tolerance_s=c.tolerance_s, max_snooze=timedelta(hours=c.max_snooze_h), replay=replay)

def alert_signer(settings: AgentSettings) -> AlertSigner | None:
    """The gateway's alert signer of ``[signing]``, or None (logged) when no secret file is configured.

    Raises:
        ConfigError: the secret file cannot be read.
    """
    s = settings.signing
    if s.secret_file is None:
        _log.warning("signing.disabled", action="set [signing] secret_file: a bridge with require_signed_alerts "
                     "(the default) refuses unsigned alert events")
        return None
    return AlertSigner(key_id=s.key_id or settings.gateway, secret=read_secret(s.secret_file, "signing.secret_file"))
