"""Measure job throughput: `python -m tilewright.jobs.bench --executor embedded|celery --jobs 40`.

Starts the real pieces in a temporary folder (a `tilewright serve`; for Celery also
`--workers` `tilewright worker` processes and, unless `--broker-url` names a running broker
such as RabbitMQ's `amqp://guest:guest@127.0.0.1:5672//`, a private `redis-server`), submits N
jobs over HTTP (distinct idempotency keys, so each one runs) and reports jobs per minute from
the first submission to the last job finished. `--kind ping` measures the queue's own overhead:
jobs per second and the p50/p99 latency from submission (`created_at`) to start (`started_at`).
`--database-url postgresql+psycopg://...` puts the job database there instead of SQLite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

TILEWRIGHT = str(Path(sys.executable).parent / "tilewright")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _jobs(base: str, count: int) -> list[dict]:
    return httpx.get(f"{base}/jobs", params={"limit": min(1000, count)}, timeout=30).json()


def _wait(predicate, timeout: float, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(interval)
    raise SystemExit("timed out")


def _latency(job: dict) -> float:
    """Seconds from a job's submission to its (last) start, from the record's timestamps."""
    created, started = (datetime.fromisoformat(job[k].rstrip("Z")) for k in ("created_at", "started_at"))
    return (started - created).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executor", choices=["embedded", "celery"], default="embedded")
    parser.add_argument("--jobs", type=int, default=40, choices=range(1, 1001), metavar="1..1000")
    parser.add_argument("--workers", type=int, default=2, help="embedded concurrency, or Celery worker processes")
    parser.add_argument("--kind", choices=["convert", "ping"], default="convert")
    parser.add_argument("--broker-url", default="", help="a running Celery broker (default: a private redis-server)")
    parser.add_argument("--database-url", default="", help="the job database (default: SQLite in the folder)")
    parser.add_argument(
        "--input",
        default=str(
            Path(
                os.environ.get(
                    "TILEWRIGHT_TESTDATA", Path(__file__).resolve().parents[3].parent / "shared" / "testdata"
                )
            )
            / "svs"
            / "cmu-1-small-region.svs"
        ),
    )
    args = parser.parse_args()
    source = Path(args.input).resolve()
    folder = Path(tempfile.mkdtemp(prefix="tw-bench-"))
    procs: list[subprocess.Popen] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILEWRIGHT_")}
    env.update(
        TILEWRIGHT_DATA_DIR=str(folder / "data"),
        TILEWRIGHT_INPUT_ROOTS=f'["{source.parent}"]',
        TILEWRIGHT_CONCURRENCY=str(args.workers),
        TILEWRIGHT_EXECUTOR=args.executor,
    )
    if args.database_url:
        env["TILEWRIGHT_DATABASE_URL"] = args.database_url
    try:
        if args.executor == "celery" and args.broker_url:
            env["TILEWRIGHT_BROKER_URL"] = args.broker_url
        elif args.executor == "celery":
            redis_port = _port()
            procs.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(redis_port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--dir",
                        str(folder),
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
            env["TILEWRIGHT_BROKER_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        if args.executor == "celery":
            env["TILEWRIGHT_BROKER_FALLBACK"] = "false"
            for n in range(args.workers):
                log = open(folder / f"worker{n}.log", "wb")
                procs.append(
                    subprocess.Popen(
                        [TILEWRIGHT, "worker", "--concurrency", "1", "--name", f"b{n}@%h"],
                        env=env,
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                    )
                )
            for n in range(args.workers):
                _wait(lambda n=n: b"ready." in (folder / f"worker{n}.log").read_bytes(), 60)
        port = _port()
        procs.append(subprocess.Popen([TILEWRIGHT, "serve", "--port", str(port)], env=env, start_new_session=True))
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: httpx.get(f"{base}/readyz").status_code == 200, 60)
        started = time.monotonic()
        params: dict[str, object] = {"input": str(source)} if args.kind == "convert" else {}
        ids = [
            httpx.post(
                f"{base}/jobs",
                json={"kind": args.kind, "params": {**params, "nonce": str(i)} if args.kind == "ping" else params},
                headers={"Idempotency-Key": f"bench-{i}"},
            ).json()["id"]
            for i in range(args.jobs)
        ]
        # one list request per look (not one per job: that load would be what is measured)
        _wait(lambda: sum(j["state"] in ("succeeded", "failed") for j in _jobs(base, len(ids))) >= len(ids), 3600, 0.25)
        elapsed = time.monotonic() - started
        jobs = _jobs(base, len(ids))
        ok = sum(j["state"] == "succeeded" for j in jobs)
        mean = sum(j["duration_seconds"] or 0 for j in jobs) / len(jobs)
        broker = env.get("TILEWRIGHT_BROKER_URL", "").split(":", 1)[0] if args.executor == "celery" else "-"
        what = f"{args.executor} ({broker}) x{args.workers} {args.kind}"
        if args.kind == "ping":
            waits = sorted(_latency(j) for j in jobs)
            p50, p99 = waits[len(waits) // 2], waits[min(len(waits) - 1, int(len(waits) * 0.99))]
            print(
                f"{what}: {ok}/{len(jobs)} succeeded in {elapsed:.1f} s = {len(jobs) / elapsed:.1f} jobs/s; "
                f"submit-to-start latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
            )
        else:
            print(
                f"{what}: {ok}/{len(jobs)} succeeded in {elapsed:.1f} s = "
                f"{len(jobs) / elapsed * 60:.0f} jobs/min (mean job run time {mean:.2f} s; input {source.name})"
            )
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM) if proc.args[0] == TILEWRIGHT else proc.terminate()
                proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                proc.kill()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
