"""Control-plane load: one run emitting events, many SSE clients on it, and a steady rate of status reads.

A synthetic run (no Ray): a writer thread commits `--rate` events/s for `--duration` s straight into a SQLite run
store, then the run's terminal event. The API reads that store, as it reads any run's; it is served by uvicorn in a
separate process owned (and stopped) by this script, on loopback only, with bearer auth on. Meanwhile, in this
process's event loop:

- `--clients` SSE clients stream the run's events; each checks it got every event exactly once and in id order,
  and records the delivery lag of each (time received minus the event's `created_at` in the store);
- an open-loop reader sends `--status-rate` GET /v1/runs/{id} per second (a request is sent on schedule whether or
  not earlier ones have answered, so queueing shows in the latency) and records each latency.

Both the clients and the server share this machine's cores, so the figures include the clients' own CPU use.
Targets: p99 status latency < 100 ms, p99 delivery lag < 1 s, every client every event in order.

Run: python -m benchmarks.api_load [--duration 60] [--clients 200] [--rate 20] [--status-rate 50]
     (smoke: python -m benchmarks.api_load --duration 5 --clients 20)
Writes benchmarks/results/api_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import write_result

TOKEN = "bench-token-0123456789abcdef"
RUN_ID = "load-run"
STORE_ENV = "VISIONG1_STORE_URL"


# --- the server side: an app over the benchmark's store, in its own uvicorn process -----------------------------------

class StoreOnlyLauncher:
    """Starts nothing: the benchmark's run lives only in the store, written by the benchmark itself."""

    def launch(self, config):
        raise RuntimeError("the load benchmark starts no runs")

    def alive(self, run_id: str) -> bool | None:
        return None

    def ready(self) -> bool:
        return True

    def cluster(self) -> dict:
        return {"backend": "none", "nodes": []}


def bench_app():
    """uvicorn factory (`benchmarks.api_load:bench_app --factory`): the store from VISIONG1_STORE_URL, the token
    from VISIONG1_API_TOKEN."""
    from services.api.app import create_app
    from visiong1.config import load_config_tree

    # Every client shares one token: the per-token stream limit would refuse all but `api.stream_burst` of them.
    config = load_config_tree({"store": os.environ[STORE_ENV], "output_dir": str(Path(os.environ[STORE_ENV]).parent),
                               "api": {"stream_burst": 100_000}})
    return create_app(config, launcher=StoreOnlyLauncher())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(store_path: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, STORE_ENV: str(store_path), "VISIONG1_API_TOKEN": TOKEN}
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "uvicorn", "benchmarks.api_load:bench_app", "--factory",
                                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                                 "--no-access-log"], env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_serving(url: str, server: subprocess.Popen, log_path: Path, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn not serving after {deadline_s} s:\n{log_path.read_text()}")
        time.sleep(0.1)


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# --- the run: events written on a schedule ---------------------------------------------------------------------------

def write_events(store_path: Path, rate: float, duration_s: float, started: threading.Event) -> int:
    """Commit `rate` events/s for `duration_s` s (on a fixed schedule), then `run_finished`; return the count."""
    from visiong1.store import RunStore

    count = int(rate * duration_s)
    with RunStore.open(store_path) as store:
        started.wait()
        t0 = time.monotonic()
        for seq in range(count):
            time.sleep(max(0.0, t0 + seq / rate - time.monotonic()))
            store.append_event(RUN_ID, "step", {"seq": seq, "metrics": {"reward/mean": 0.5, "step": seq}})
        store.append_event(RUN_ID, "run_finished", {"steps": count})
    return count + 1


# --- the clients -----------------------------------------------------------------------------------------------------

@dataclass
class StreamResult:
    ids: list[int] = field(default_factory=list)
    lags_s: list[float] = field(default_factory=list)
    error: str | None = None


async def follow_stream(http: httpx.AsyncClient, result: StreamResult, connected: asyncio.Event) -> None:
    """Read the run's SSE stream to its end, recording each event's id and delivery lag."""
    try:
        async with http.stream("GET", f"/v1/runs/{RUN_ID}/events") as response:
            response.raise_for_status()
            connected.set()
            event_id = None
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    event_id = int(line[3:].strip())
                elif line.startswith("data:") and event_id is not None:
                    received = time.time()
                    result.ids.append(event_id)
                    result.lags_s.append(received - json.loads(line[5:])["time"])
                    event_id = None
    except Exception as error:  # recorded per client: one broken stream must not hide the others' figures
        result.error = f"{type(error).__name__}: {error}"
        connected.set()


async def read_status(http: httpx.AsyncClient, latencies_s: list[float], failures: list[str]) -> None:
    started = time.perf_counter()
    try:
        response = await http.get(f"/v1/runs/{RUN_ID}")
        response.raise_for_status()
        latencies_s.append(time.perf_counter() - started)
    except Exception as error:
        failures.append(f"{type(error).__name__}: {error}")


async def status_reads(http: httpx.AsyncClient, rate: float, until: threading.Event,
                       latencies_s: list[float], failures: list[str]) -> int:
    """Open loop: one read every 1/rate s until `until` is set; returns how many were sent."""
    tasks, t0 = [], time.monotonic()
    while not until.is_set():
        tasks.append(asyncio.create_task(read_status(http, latencies_s, failures)))
        await asyncio.sleep(max(0.0, t0 + len(tasks) / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    return len(tasks)


async def drive(url: str, store_path: Path, args) -> dict:
    limits = httpx.Limits(max_connections=args.clients + 200, max_keepalive_connections=args.clients + 200)
    timeout = httpx.Timeout(30.0, read=args.duration + 120)
    headers = {"authorization": f"Bearer {TOKEN}"}
    results = [StreamResult() for _ in range(args.clients)]
    latencies_s, failures = [], []
    started, finished = threading.Event(), threading.Event()
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as http:
        connected = [asyncio.Event() for _ in results]
        streams = [asyncio.create_task(follow_stream(http, result, flag)) for result, flag in zip(results, connected)]
        await asyncio.gather(*(flag.wait() for flag in connected))
        writer = asyncio.create_task(asyncio.to_thread(_write_then_flag, store_path, args, started, finished))
        started.set()
        sent = await status_reads(http, args.status_rate, finished, latencies_s, failures)
        written = await writer
        await asyncio.wait_for(asyncio.gather(*streams), timeout=120)
    return {"results": results, "latencies_s": latencies_s, "failures": failures, "sent": sent, "written": written}


def _write_then_flag(store_path: Path, args, started: threading.Event, finished: threading.Event) -> int:
    try:
        return write_events(store_path, args.rate, args.duration, started)
    finally:
        finished.set()


# --- figures ---------------------------------------------------------------------------------------------------------

def percentiles_ms(values_s: list[float]) -> dict:
    if not values_s:
        return {"p50": None, "p99": None, "max": None, "count": 0}
    array = np.asarray(values_s) * 1000
    return {"p50": round(float(np.percentile(array, 50)), 2), "p99": round(float(np.percentile(array, 99)), 2),
            "max": round(float(array.max()), 2), "count": int(array.size)}


def figures_of(outcome: dict, args) -> dict:
    expected = list(range(1, outcome["written"] + 1))
    results = outcome["results"]
    complete = [r.ids == expected for r in results]
    status = percentiles_ms(outcome["latencies_s"])
    lag = percentiles_ms([lag for r in results for lag in r.lags_s])
    return {
        "status_latency_ms": status, "status_reads_sent": outcome["sent"],
        "status_read_failures": len(outcome["failures"]), "status_failure_examples": outcome["failures"][:3],
        "delivery_lag_ms": lag, "events_written": outcome["written"],
        "clients": len(results), "clients_complete_in_order": sum(complete),
        "clients_incomplete": [{"client": i, "received": len(r.ids), "error": r.error}
                               for i, r in enumerate(results) if not complete[i]][:10],
        "targets": {"status_p99_under_100ms": status["p99"] is not None and status["p99"] < 100,
                    "delivery_lag_p99_under_1s": lag["p99"] is not None and lag["p99"] < 1000,
                    "every_client_every_event_in_order": all(complete)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of events")
    parser.add_argument("--clients", type=int, default=200, help="concurrent SSE clients")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--status-rate", type=float, default=50.0, help="GET /v1/runs/{id} per second")
    args = parser.parse_args()

    from visiong1.store import RunStore

    work_dir = Path(tempfile.mkdtemp(prefix="vg1-api-load-"))
    store_path = work_dir / "store.sqlite3"
    with RunStore.open(store_path) as store:
        store.create_run(RUN_ID, {"name": "load", "round": {"steps": 1}})
    port, log_path = free_port(), work_dir / "uvicorn.log"
    server = start_server(store_path, port, log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, server, log_path)
        outcome = asyncio.run(drive(url, store_path, args))
    finally:
        stop_server(server)
    figures = figures_of(outcome, args)
    print(json.dumps(figures, indent=2))
    print(f"wrote {write_result('api_load', figures, vars(args))}")


if __name__ == "__main__":
    main()
