"""`python -m bench serving`: the serving API against its practical limit, in one run.

Three servers under the same uvicorn settings (one process, the ``serving.loop``/``serving.http``
settings, access log off) and the same load generator:

- **serving**: ``streamlearn serve`` on the real stack, champion = the cold-start model the
  trainer settings describe (``trainer.model``, ``hash_bits`` 18), every candidate logged to
  a scratch ``predictions`` topic, Prometheus instrumentation on (the default);
- **serving, metrics off**: the same with ``serving.request_metrics: false``;
- **baseline**: a minimal FastAPI endpoint that reads the same request body and returns a
  JSON of exactly the serving response's size.

Phases: closed-loop maximum throughput of each, measured in alternating slices (baseline,
serving, serving without metrics, baseline, …) so that other load on the machine weighs on all
alike (``rps``, ``baseline_rps``, ``ratio``, ``metrics_overhead`` = 1 − rps / rps without
metrics); then open-loop load on serving at half its maximum rate, latency measured from each
request's scheduled send time (no coordinated omission: ``p50_ms``, ``p99_ms``); then the same
load while new versions are promoted one after another, each first registered as the trainer
does after its gate decides (``model.save`` + ``registry.put``, timed as ``register_ms_p50``).
``swap_visible_ms_p50`` is the time from the start of ``registry.promote`` to the first
response served by the new version (the registry's verification, the pub/sub announcement,
serving's artifact read, signature check and deserialisation); ``failed`` counts every
non-200 or broken response across all serving phases. A baseline that answers anything but
200 aborts the run: its rate would not be the limit.

The load generator speaks raw HTTP/1.1 keep-alive over asyncio streams (a Python client
library would be the bottleneck on 2 cores) and runs in this process, the servers in theirs.
``loadgen_cpu`` reports the share of one core it used during the throughput slices: well
below 1, it was not the limit.

Where serving's CPU goes (``bench/serving_costs.py``): ``serving_cpu_us_by_thread`` splits the
serving process's CPU per request between its event-loop thread, librdkafka's threads and the
rest; ``step_us`` times the route's steps one by one in this process after the servers stop;
``budget_us`` is what serving may spend per request above the baseline for ratio 0.6.

Targets (issues 5 and 7): ratio ≥ 0.6 with logging on; p99 ≤ 25 ms at half the maximum rps;
swap visible ≤ 500 ms p50; failed = 0; metrics_overhead ≤ 0.05.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import redis

# At module level, not in ``_baseline``: with ``from __future__ import annotations`` FastAPI
# resolves a route's annotations in the module's globals, and a ``Request`` it cannot find
# there becomes a required query parameter (every baseline call a 422).
from fastapi import FastAPI, Request, Response
from rich.console import Console

from bench.common import percentile, running_stack, scratch_topic
from bench.serving_costs import step_costs
from config.settings import RegistrySettings, ServingSettings, load
from services.local.loop import free_port
from services.local.stack.manager import Stack
from services.local.wait import stop_process, wait_for
from services.ops.cpu import THREAD_GROUPS, cpu_by_thread

if TYPE_CHECKING:
    from services.registry import Registry

CANDIDATES = 20
TARGETS = {"ratio": 0.6, "p99_ms": 25.0, "swap_visible_ms_p50": 500.0,
           "metrics_overhead": 0.05}


def _bodies(n: int, seed: int = 7) -> list[bytes]:
    """Predict bodies with 20 candidates each, varied users and items."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        body = {
            "user_id": f"u{rng.randrange(10_000)}",
            "context": {"device": rng.choice(["mobile", "desktop", "tv"]),
                        "hour": rng.randrange(24)},
            "candidates": [
                {"item_id": f"i{rng.randrange(100_000)}",
                 "features": {"item_category": f"c{rng.randrange(50)}",
                              "price": round(rng.uniform(1, 200), 2)}}
                for _ in range(CANDIDATES)
            ],
        }
        out.append(orjson.dumps(body))
    return out


def _http_request(port: int, body: bytes) -> bytes:
    return (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


class _Conn:
    """One keep-alive connection speaking just enough HTTP/1.1."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> _Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def call(self, payload: bytes) -> tuple[int, bytes]:
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.index(b"content-length:") + len(b"content-length:")
        length = int(lower[at:lower.index(b"\r\n", at)])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class Load:
    """Results of one load phase: latencies (s), failures and the versions served."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failed = 0
        self.served: list[tuple[float, str]] = []  # (receive time, model_version)


async def _closed_loop(port: int, payloads: list[bytes], seconds: float,
                       connections: int) -> tuple[float, Load]:
    """Every connection sends its next request as soon as the last one is answered."""
    load = Load()
    conns = [await _Conn.open(port) for _ in range(connections)]
    deadline = time.perf_counter() + seconds

    async def worker(k: int, conn: _Conn) -> None:
        i = k
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                status, _ = await conn.call(payloads[i % len(payloads)])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                load.failed += 1
                conn = await _Conn.open(port)
                continue
            load.latencies.append(time.perf_counter() - t0)
            load.failed += status != 200
            i += connections

    started = time.perf_counter()
    await asyncio.gather(*(worker(k, c) for k, c in enumerate(conns)))
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    return len(load.latencies) / elapsed, load


async def _open_loop(port: int, payloads: list[bytes], seconds: float, rate: float,
                     connections: int, *, load: Load | None = None,
                     until: threading.Event | None = None, max_s: float = 0.0) -> Load:
    """Requests scheduled at a fixed rate; latency counts from the scheduled time.

    Runs ``seconds``, or with ``until`` for as long as that event is unset (at most ``max_s``,
    by default four times ``seconds``). ``load`` may be passed to watch results while it runs.
    """
    load = load or Load()
    pool: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await _Conn.open(port))
    tasks = []

    async def one(i: int, scheduled: float) -> None:
        conn = await pool.get()
        try:
            status, body = await conn.call(payloads[i % len(payloads)])
        except (OSError, asyncio.IncompleteReadError, ValueError):
            load.failed += 1
            pool.put_nowait(await _Conn.open(port))
            return
        done = time.perf_counter()
        pool.put_nowait(conn)
        load.latencies.append(done - scheduled)
        if status != 200:
            load.failed += 1
        else:
            load.served.append((done, orjson.loads(body)["model_version"]))

    start = time.perf_counter()
    n, cap = int(seconds * rate), int((max_s or 4 * seconds) * rate)
    for i in range(cap):
        if i >= n and (until is None or until.is_set()):
            break
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()
    return load


@contextmanager
def _process(args: list[str], env: dict[str, str], log: Path, port: int,
             timeout_s: float = 90.0) -> Iterator[subprocess.Popen[bytes]]:
    """A server subprocess, up once ``/healthz``-style readiness answers; always stopped."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{args[:3]} exited: {log.read_text()[-2000:]}")
        return _ready(port)

    try:
        try:
            wait_for(ready, timeout_s, f"{args[:3]} to be ready")
        except TimeoutError:
            raise RuntimeError(f"{args[:3]} not ready after {timeout_s} s") from None
        yield proc
    finally:
        stop_process(proc, timeout_s=15)


def _ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _one_response(port: int, body: bytes) -> bytes:
    async def go() -> bytes:
        conn = await _Conn.open(port)
        try:
            status, out = await conn.call(_http_request(port, body))
        finally:
            conn.close()
        if status != 200:
            raise RuntimeError(f"serving answered {status}: {out[:300]!r}")
        return out
    return asyncio.run(go())


def _swapper(registry: Registry, swaps: int, gap_s: float, marks: list[tuple[float, str]],
             register_ms: list[float], promote_ms: list[float], load: Load,
             done: threading.Event) -> None:
    """Promote ``swaps`` new versions one after another, each registered first as the trainer
    does once its gate decides, each time waiting (≤ 10 s) until the load has seen it; record
    when each promotion started. ``done`` ends the load."""
    try:
        time.sleep(gap_s)
        for _ in range(swaps):
            t_decided = time.perf_counter()
            target = _register_challenger(registry, registry.champion_version())
            t0 = time.perf_counter()
            register_ms.append((t0 - t_decided) * 1000)
            registry.promote(target, "bench: swap")
            promote_ms.append((time.perf_counter() - t0) * 1000)
            marks.append((t0, target))
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and not any(
                t >= t0 and v == target for t, v in load.served[-50:]
            ):
                time.sleep(0.01)
            time.sleep(gap_s)
    finally:
        done.set()


def _visible_ms(marks: list[tuple[float, str]], served: list[tuple[float, str]]) -> list[float]:
    out = []
    for t0, version in marks:
        seen = [t for t, v in served if t >= t0 and v == version]
        if seen:
            out.append((min(seen) - t0) * 1000)
    return out


def _cpu_s(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Throughput:
    """Closed-loop results of one server over all its slices."""

    def __init__(self) -> None:
        self.load = Load()
        self.busy_s = 0.0  # wall time under load
        self.cpu_s = 0.0  # the server's CPU time meanwhile
        self.threads = dict.fromkeys(THREAD_GROUPS, 0.0)  # the same, by thread group

    @property
    def rps(self) -> float:
        return len(self.load.latencies) / self.busy_s

    @property
    def cpu_us(self) -> float:
        """Server CPU per request (µs): less sensitive to other load than rps."""
        return self.cpu_s / len(self.load.latencies) * 1e6


def _alternating(servers: list[tuple[int, int, list[bytes]]], slices: int, slice_s: float,
                 connections: int) -> tuple[list[Throughput], float]:
    """Closed-loop throughput of each ``(pid, port, payloads)`` server, measured in slices
    that alternate between them so that whatever else runs on the machine weighs on all alike.

    Each round starts with the first server (the baseline) and takes the others in order on
    even rounds, in reverse on odd ones, so each follows the baseline equally often (with the
    order only rotating, serving always came right after it). Use an even ``slices``. Two
    identical servers (both with metrics) still differ here: A/A runs gave
    ``metrics_overhead`` +0.076 and, places swapped, −0.053 with the rotating order, and
    −0.042 with this one. Read differences below ~0.08 as noise.

    Returns:
        Each server's results, and the load generator's CPU time over the wall time of all
        slices (the share of one core it used).
    """
    results = [Throughput() for _ in servers]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for r in range(slices):
        rest = list(range(1, len(servers)))
        for k in [0, *(rest if r % 2 == 0 else rest[::-1])]:
            pid, port, payloads = servers[k]
            before, threads = _cpu_s(pid), cpu_by_thread(pid)
            rps, part = asyncio.run(_closed_loop(port, payloads, slice_s, connections))
            results[k].cpu_s += _cpu_s(pid) - before
            for group, used in cpu_by_thread(pid).items():
                results[k].threads[group] += used - threads[group]
            results[k].load.latencies += part.latencies
            results[k].load.failed += part.failed
            results[k].busy_s += len(part.latencies) / rps
    return results, (time.process_time() - cpu0) / (time.perf_counter() - wall0)


def run(quick: bool = False, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    seconds = 3.0 if quick else 10.0
    swaps = 4 if quick else 10
    connections = 8
    with running_stack() as stack, tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        with scratch_topic(stack.kafka_settings.bootstrap_servers,
                           stack.kafka_settings.partitions) as topic:
            return _measure(stack, topic, work, seconds, swaps, connections, console)


def _measure(stack: Stack, topic: str, work: Path, seconds: float, swaps: int,
             connections: int, console: Console) -> dict[str, Any]:
    slices, slice_s = (2, 1.5) if seconds < 5 else (8, 2.0)
    from services.registry.redis import RedisRegistry

    serving_settings = load(ServingSettings)
    prefix = f"bench-serving-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(stack.redis_settings.url, socket_timeout=30.0)
    registry = RedisRegistry(client, load(RegistrySettings, prefix=prefix))
    serve_port, quiet_port, base_port = free_port(), free_port(), free_port()
    env = {**os.environ, "STREAMLEARN_REGISTRY_PREFIX": prefix,
           "STREAMLEARN_KAFKA_PREDICTIONS_TOPIC": topic,
           "STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_settings.bootstrap_servers,
           "STREAMLEARN_REDIS_URL": stack.redis_settings.url}
    quiet_env = {**env, "STREAMLEARN_SERVING_REQUEST_METRICS": "false"}
    cli = str(Path(sys.executable).with_name("streamlearn"))
    bodies = _bodies(256)
    payloads = [_http_request(serve_port, b) for b in bodies]
    marks: list[tuple[float, str]] = []
    register_ms: list[float] = []
    promote_ms: list[float] = []
    swapping = Load()
    try:
        console.print("starting streamlearn serve (cold-start champion)…")
        with _process([cli, "serve", "--port", str(serve_port), "--log-level", "warning"],
                      env, work / "serve.log", serve_port) as served:
            sample = _one_response(serve_port, _bodies(1)[0])
            (work / "response.json").write_bytes(sample)
            with _process([cli, "serve", "--port", str(quiet_port), "--log-level", "warning"],
                          quiet_env, work / "serve-quiet.log", quiet_port) as quiet_proc, \
                    _process([sys.executable, "-m", "bench.serving", "--baseline",
                              "--port", str(base_port), "--response", str(work / "response.json"),
                              "--loop", serving_settings.loop, "--http", serving_settings.http],
                             env, work / "baseline.log", base_port) as base_proc:
                console.print(f"max throughput: {slices} alternating slices of {slice_s} s "
                              f"each, {connections} connections")
                (base, full, quiet), loadgen_cpu = _alternating(
                    [(base_proc.pid, base_port, [_http_request(base_port, b) for b in bodies]),
                     (served.pid, serve_port, payloads),
                     (quiet_proc.pid, quiet_port,
                      [_http_request(quiet_port, b) for b in bodies])],
                    slices, slice_s, connections)
                if base.load.failed:
                    # A baseline answering errors (it once answered every call with a 422)
                    # measures something cheaper than the same-size JSON: no ratio then.
                    raise RuntimeError(f"the baseline failed {base.load.failed} of "
                                       f"{len(base.load.latencies)} requests; no ratio")
            rps, base_rps, quiet_rps = full.rps, base.rps, quiet.rps
            half = rps / 2
            console.print(f"serving: open loop at {half:.0f} rps, {seconds} s")
            paced = asyncio.run(_open_loop(serve_port, payloads, seconds, half, 64))

            done = threading.Event()
            gap = 0.5 if seconds < 5 else 1.0
            swapper = threading.Thread(target=_swapper, args=(registry, swaps, gap, marks,
                                                              register_ms, promote_ms,
                                                              swapping, done))
            console.print(f"serving: open loop at {half:.0f} rps with {swaps} promotions")
            swapper.start()
            try:
                # Until the last promotion was seen: registering a version takes seconds.
                asyncio.run(_open_loop(serve_port, payloads, gap * (swaps + 1), half, 64,
                                       load=swapping, until=done, max_s=15.0 * swaps))
            finally:
                swapper.join(15.0 * swaps)
        loaded_ms = _load_times(work / "serve.log", {v for _, v in marks})
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    console.print("the route's steps, timed one by one in process…")
    steps = step_costs(bodies, stack.kafka_settings.bootstrap_servers, topic)
    visible = _visible_ms(marks, swapping.served)
    failed = full.load.failed + quiet.load.failed + paced.failed + swapping.failed
    p50_ms = percentile(paced.latencies, 0.5) * 1000
    p99_ms = percentile(paced.latencies, 0.99) * 1000
    swap_p50 = percentile(visible, 0.5) if visible else None
    overhead = 1 - rps / quiet_rps
    figures: dict[str, Any] = {
        "candidates": CANDIDATES,
        "rps": round(rps, 1),
        "p50_ms": round(p50_ms, 2),
        "p99_ms": round(p99_ms, 2),
        "baseline_rps": round(base_rps, 1),
        "ratio": round(rps / base_rps, 3),
        "swap_visible_ms_p50": None if swap_p50 is None else round(swap_p50, 1),
        "failed": failed,
        "metrics_overhead": round(overhead, 3),
        "rps_metrics_off": round(quiet_rps, 1),
        "at_rps": round(half, 1),
        "swaps": len(marks),
        "requests": sum(len(x.latencies)
                        for x in (full.load, quiet.load, base.load, paced, swapping)),
        "swap_visible_ms_max": round(max(visible), 1) if visible else None,
        "swaps_not_visible": len(marks) - len(visible),
        # Where a promotion's time goes: the trainer's registration before it (not in
        # swap_visible), the registry's promote (artifact verified again, pointer, pub/sub),
        # serving's load (artifact read, SHA-256 + HMAC, deserialisation; from its log).
        "register_ms_p50": _p50(register_ms),
        "promote_ms_p50": _p50(promote_ms),
        "serving_load_ms_p50": _p50(loaded_ms),
        "loadgen_cpu": round(loadgen_cpu, 2),
        # Server CPU per request during the throughput slices (all threads): the same costs
        # as the rates above, much less sensitive to what else runs on the machine.
        "cpu_us_per_request": {"serving": round(full.cpu_us), "metrics_off": round(quiet.cpu_us),
                               "baseline": round(base.cpu_us)},
        "metrics_overhead_cpu": round(1 - quiet.cpu_us / full.cpu_us, 3),
        # Where serving's CPU per request goes (bench/serving_costs.py): by thread of the
        # serving process, and the route's steps in process; ``budget_us`` is what serving may
        # spend per request above the baseline for ratio 0.6 (baseline × (1 / 0.6 − 1)).
        "serving_cpu_us_by_thread": {g: round(used / len(full.load.latencies) * 1e6)
                                     for g, used in full.threads.items()},
        "step_us": steps,
        "budget_us": round(base.cpu_us * (1 / TARGETS["ratio"] - 1)),
        "server": {"loop": serving_settings.loop, "http": serving_settings.http},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    figures["meets_targets"] = bool(
        rps / base_rps >= TARGETS["ratio"] and p99_ms <= TARGETS["p99_ms"]
        and swap_p50 is not None and swap_p50 <= TARGETS["swap_visible_ms_p50"]
        and failed == 0 and len(visible) == len(marks)
        and overhead <= TARGETS["metrics_overhead"]
    )
    return figures


def _p50(values: list[float]) -> float | None:
    return round(percentile(values, 0.5), 1) if values else None


_LOADED = re.compile(r"now serving (\S+) \(was [^;]*; loaded in (\d+) ms\)")


def _load_times(log: Path, versions: set[str]) -> list[float]:
    """How long serving took to load each of ``versions``, as its watcher logged it."""
    found = (_LOADED.search(line) for line in log.read_text(errors="replace").splitlines())
    return [float(m.group(2)) for m in found if m and m.group(1) in versions]


def _register_challenger(registry: Registry, parent: str | None) -> str:
    """A fine-tuned child of the champion, same architecture, registered with its signed
    artifact: what the trainer does between its gate's decision and ``promote``."""
    from services.registry import register

    if parent is None:
        raise RuntimeError("no champion to fine-tune a challenger from")
    model = registry.load(parent)
    model.learn_many([{"item_id": f"i{i}", "item_category": f"c{i % 50}"} for i in range(512)],
                     [int(i % 7 == 0) for i in range(512)])
    return register(registry, model, parent=parent, mode="stateful",
                    now_ms=int(time.time() * 1000)).version


def _baseline(port: int, response: Path, loop: str, http: str) -> None:
    """The practical limit: FastAPI reading the body and returning fixed bytes, same size."""
    import uvicorn

    body = response.read_bytes()
    app = FastAPI()

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        await request.body()
        return Response(body, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> dict[str, bool]:
        return {"ready": True}

    # The same settings `streamlearn serve` passes to uvicorn.run.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                loop=loop, http=http)  # type: ignore[arg-type]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the baseline server of bench serving")
    parser.add_argument("--baseline", action="store_true", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--response", type=Path, required=True)
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--http", default="auto")
    cli_args = parser.parse_args()
    _baseline(cli_args.port, cli_args.response, cli_args.loop, cli_args.http)
