"""systemd readiness and watchdog notifications (``Type=notify`` + ``WatchdogSec=``).

Three pieces:

* :class:`Notifier` sends ``READY=1``, ``STOPPING=1``, ``RELOADING=1``, ``STATUS=…`` and
  ``WATCHDOG=1`` datagrams to ``$NOTIFY_SOCKET`` through the ``sdnotify`` package. Without
  ``NOTIFY_SOCKET`` (a terminal, a test, a container) every call is a no-op.
* :class:`Heartbeat` is a thread-safe "last progress" stamp that a loop touches.
* :class:`Watchdog` is called by the service's main loop on every iteration: it pings systemd only
  while the loop says it is healthy *and* every :class:`Liveness` probe (e.g. the MQTT network
  thread's heartbeat) made progress recently. When a probe goes stale the pings stop, so systemd
  kills and restarts the service after ``WatchdogSec`` — restarting what the service's own
  reconnect loop could not recover, and nothing else.

Wiring in a service's main loop::

    with Notifier() as notifier:  # closes the socket on exit
        watchdog = Watchdog(notifier, [Liveness("mqtt", client.heartbeat_age_s, max_age_s=90.0)])
        notifier.ready("connecting to the broker")
        while not stop.is_set():
            ...                      # one iteration of real work
            watchdog.beat(healthy=True)
            stop.wait(1.0)
        notifier.stopping()
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import sdnotify

from pdm_common.logs import get_logger

__all__ = ["Heartbeat", "Liveness", "Notifier", "Watchdog"]

_log = get_logger(__name__)

_MAX_STATUS_CHARS = 200
"""systemctl status shows one line; a long STATUS only wraps the journal."""


class Notifier:
    """Sends sd_notify(3) messages; a no-op when the service was not started by systemd.

    Args:
        environ: where to read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``
            (default ``os.environ``). The socket itself is opened by ``sdnotify`` from ``os.environ``.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self.watchdog_interval_s = _watchdog_interval_s(env)
        self._lock = threading.Lock()
        self._sd = sdnotify.SystemdNotifier(debug=True) if self.enabled else None
        self._failed = False

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the notification socket; later calls become no-ops."""
        if self._sd is not None and self._sd.socket is not None:
            self._sd.socket.close()
        self._sd = None

    def ready(self, status: str | None = None) -> None:
        """Start-up finished: systemd marks the unit active and starts the watchdog clock."""
        self._send("READY=1", status)

    def reloading(self, status: str | None = None) -> None:
        """A SIGHUP reload began; call :meth:`ready` when it finished."""
        self._send("RELOADING=1", status)

    def stopping(self, status: str | None = None) -> None:
        """Shutdown began; systemd stops expecting watchdog pings."""
        self._send("STOPPING=1", status)

    def status(self, text: str) -> None:
        """One-line state shown by ``systemctl status``."""
        self._send(None, text)

    def watchdog_ping(self) -> None:
        """Tell systemd the service is alive (``WATCHDOG=1``)."""
        self._send("WATCHDOG=1", None)

    def _send(self, state: str | None, status: str | None) -> None:
        if self._sd is None:
            return
        lines = [state] if state else []
        if status is not None:
            lines.append("STATUS=" + " ".join(status.split())[:_MAX_STATUS_CHARS])
        try:
            with self._lock:
                self._sd.notify("\n".join(lines))
        except OSError as exc:
            if not self._failed:  # log once: the socket will not come back within this process
                _log.error("systemd.notify_failed", error=str(exc), action="check NOTIFY_SOCKET / NotifyAccess=")
            self._failed = True


def _watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC``, as sd_watchdog_enabled(3) recommends; None without a watchdog."""
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):  # the watchdog belongs to another process (e.g. our parent)
        return None
    try:
        usec = int(raw)
    except ValueError:
        _log.warning("systemd.bad_watchdog_usec", value=raw[:32])
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


class Heartbeat:
    """A progress stamp: a loop calls :meth:`touch`; the watchdog reads :meth:`age_s`.

    Args:
        clock: monotonic seconds; injectable so tests control time.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()

    def touch(self) -> None:
        """Record progress now (a float store is atomic under the GIL; no lock needed)."""
        self._last = self._clock()

    def age_s(self) -> float:
        """Seconds since the last :meth:`touch` (or since creation)."""
        return self._clock() - self._last


@dataclass(frozen=True, slots=True)
class Liveness:
    """One condition the watchdog requires: ``age_s()`` must stay at or below ``max_age_s``.

    Attributes:
        name: short label used in logs and in the systemd STATUS line (``mqtt``).
        age_s: seconds since the watched loop last made progress.
        max_age_s: staleness beyond which the loop counts as wedged.
    """

    name: str
    age_s: Callable[[], float]
    max_age_s: float


class Watchdog:
    """Feeds the systemd watchdog only while the service is live.

    Args:
        notifier: where the pings go.
        probes: liveness conditions, all of which must hold for a ping.
        clock: monotonic seconds, injectable for tests.
    """

    def __init__(self, notifier: Notifier, probes: Sequence[Liveness] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._notifier = notifier
        self._probes = tuple(probes)
        self._clock = clock
        interval = notifier.watchdog_interval_s
        # Ping at twice the recommended rate so a loop iteration that runs late does not miss
        # the deadline; still at most one datagram per half interval however fast the loop spins.
        self._min_gap_s = interval / 2 if interval is not None else None
        self._last_ping: float | None = None
        self._problems: tuple[str, ...] = ()
        self._failing: frozenset[str] = frozenset()

    @property
    def problems(self) -> tuple[str, ...]:
        """Why the last :meth:`beat` withheld the ping (empty when live)."""
        return self._problems

    def beat(self, healthy: bool = True) -> bool:
        """Ping systemd if ``healthy`` and every probe is fresh.

        Args:
            healthy: the main loop's own verdict (False e.g. when its work queue stopped draining).

        Returns:
            True when the service counts as live (whether or not a ping was due).
        """
        problems: dict[str, str] = {} if healthy else {"main": "main loop reported unhealthy"}
        for probe in self._probes:
            age = probe.age_s()
            if age > probe.max_age_s:
                problems[probe.name] = f"{probe.name} stalled for {age:.0f}s (limit {probe.max_age_s:.0f}s)"
        self._transition(problems)
        if problems:
            return False
        now = self._clock()
        due = self._min_gap_s is not None and (self._last_ping is None or now - self._last_ping >= self._min_gap_s)
        if due:
            self._notifier.watchdog_ping()
            self._last_ping = now
        return True

    def _transition(self, problems: dict[str, str]) -> None:
        # Compare which conditions fail, not their text: the stalled-for age grows every beat and
        # must not re-log or re-send STATUS each time.
        previous = set(self._failing)
        self._failing = frozenset(problems)
        self._problems = tuple(problems.values())
        if previous == self._failing:
            return
        if problems:
            text = "; ".join(self._problems)
            _log.error("watchdog.withheld", problems=text,
                       action="systemd restarts the service after WatchdogSec unless it recovers")
            self._notifier.status(f"unhealthy: {text}")
        else:
            _log.info("watchdog.recovered")
            self._notifier.status("running")
