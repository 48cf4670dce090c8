"""``pdm-sim desk``: run the service-desk simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from pdm_common.logs import configure_logging, get_logger
from simulators.desk.errors import FaultConfigError
from simulators.desk.faults import FaultConfig
from simulators.desk.server import DeskSimulator

__all__ = ["add_desk_parser", "run_desk"]

_log = get_logger(__name__)


def add_desk_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``desk`` sub-command (its handler is ``args.func(args) -> exit code``)."""
    desk = subparsers.add_parser(
        "desk",
        help="run the service-desk simulator (webhook, PagerDuty, Zendesk, JSM, ServiceNow)",
        description="A real HTTP server speaking the generic signed webhook and four desks' APIs, with "
        "injectable faults. Contract: docs/desk-simulator.md. Change faults at run time with POST /_sim/faults.",
    )
    desk.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    desk.add_argument("--port", type=int, default=8085, help="port to bind, 0 for a free one (default %(default)s)")
    desk.add_argument("--latency-ms", type=float, default=0.0, help="added to every desk request")
    desk.add_argument("--rate-429", type=float, default=0.0, help="share of requests answered 429")
    desk.add_argument("--retry-after-s", type=int, default=1, help="Retry-After seconds sent with 429")
    desk.add_argument("--rate-5xx", type=float, default=0.0, help="share answered 500/502/503")
    desk.add_argument("--rate-timeout", type=float, default=0.0, help="share whose answer is held --timeout-hold-s")
    desk.add_argument("--timeout-hold-s", type=float, default=5.0, help="hold of a simulated timeout")
    desk.add_argument("--rate-drop", type=float, default=0.0, help="share whose connection is closed unanswered")
    desk.add_argument("--seed", type=int, default=0, help="seed of the random fault draws")
    desk.set_defaults(func=run_desk)


def run_desk(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; exit code 0, or 2 for invalid fault switches.

    Logs go to stderr; stdout carries one line, the server's URL (useful with ``--port 0``).
    """
    configure_logging()
    try:
        faults = FaultConfig(latency_ms=args.latency_ms, rate_429=args.rate_429, retry_after_s=args.retry_after_s,
                             rate_5xx=args.rate_5xx, rate_timeout=args.rate_timeout,
                             timeout_hold_s=args.timeout_hold_s, rate_drop=args.rate_drop)
    except FaultConfigError as exc:
        _log.error("desk_sim.bad_faults", error=str(exc), action="fix the command-line switch")
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _log.info("desk_sim.signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with DeskSimulator(args.host, args.port, seed=args.seed, faults=faults) as sim:
        print(sim.url, flush=True)  # the one line a wrapper script needs to find a port picked with --port 0
        stop.wait()
    return 0
