"""Measure what the simulator sustains: ``python -m simulators.desk.throughput [--tickets N] [--clients C]``.

Each client thread opens, updates and resolves tickets through the signed webhook and Zendesk (create +
PUT) over one keep-alive httpx connection, without faults; prints tickets/s and request latency
percentiles as JSON. The bridge benchmark needs >= 200 tickets/s with p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

import httpx

from simulators.desk.auth import DeskCredentials, webhook_headers
from simulators.desk.server import DeskSimulator

__all__ = ["measure"]

REQUEST_TIMEOUT_S = 5.0


def _client_loop(url: str, creds: DeskCredentials, worker: int, count: int, latencies_s: list[float]) -> None:
    zendesk_auth = (f"{creds.zendesk_email}/token", creds.zendesk_api_token)
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        for n in range(count):
            key = f"w{worker}-t{n}"
            started = time.perf_counter()
            if n % 2:
                created = client.post("/api/v2/tickets", auth=zendesk_auth, headers={"Idempotency-Key": key},
                                      json={"ticket": {"subject": key, "external_id": key, "comment": {"body": "d"}}})
                created.raise_for_status()
            else:
                body = json.dumps({"dedup_key": key, "action": "opened", "title": key, "priority": "high"}).encode()
                headers = webhook_headers(creds.webhook_secret, key, int(time.time()), body)
                client.post("/webhook", content=body, headers=headers).raise_for_status()
            latencies_s.append(time.perf_counter() - started)


def measure(tickets: int, clients: int) -> dict[str, Any]:
    """Create ``tickets`` tickets from ``clients`` threads against a fresh simulator; rates and percentiles."""
    creds = DeskCredentials()
    latencies: list[float] = []
    per_client = tickets // clients
    with DeskSimulator(credentials=creds) as sim:
        threads = [threading.Thread(target=_client_loop, args=(sim.url, creds, w, per_client, latencies))
                   for w in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        held = len(sim.tickets())
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"tickets": held, "clients": clients, "elapsed_s": round(elapsed, 3),
            "tickets_per_s": round(held / elapsed, 1), "p50_ms": round(cuts[49] * 1000, 2),
            "p99_ms": round(cuts[98] * 1000, 2), "max_ms": round(max(latencies) * 1000, 2)}


def main() -> None:
    """Print one JSON line of measurements."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(measure(args.tickets, args.clients)))


if __name__ == "__main__":
    main()
