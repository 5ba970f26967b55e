#!/usr/bin/env python3
"""Object storage tier benchmark against a real S3-compatible server (s3s-fs) on
loopback, side by side with a plain S3 client (boto3) in the same run.

1. Replay: `strata bench tiered replay` writes a partition whose sealed segments are
   offloaded and dropped locally, then replays it from object storage with a cold block
   cache and again warm. In the same run boto3 GETs the same objects one after the other
   (a plain client reading whole objects), and also with as many concurrent GETs as the
   replay's read-ahead. Ratios: cold replay / plain GET throughput.
2. Object class: `strata bench tiered object` for each batching setting: appends/s,
   MB/s, p50/p99 acknowledgement latency, PUT requests per GB.

Runs each measurement RUNS times (default 3) and prints medians as Markdown tables.
The server runs on core 0 and the client (strata or boto3) on core 1.

Usage: benches/tiered.py [--runs N] [--mb MB] [--strata PATH] [--s3s-fs PATH]
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from journal import default_strata, settle  # noqa: E402

BUCKET = "strata"
SETTINGS = [
    # (batch_bytes, batch_ms, ack)
    (1 << 20, 10, "object"),
    (4 << 20, 50, "object"),
    (16 << 20, 200, "object"),
    (4 << 20, 50, "local"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, data, port):
    os.makedirs(os.path.join(data, BUCKET), exist_ok=True)
    proc = subprocess.Popen(
        ["taskset", "-c", "0", binary, "--host", "127.0.0.1", "--port", str(port),
         "--access-key", "AK", "--secret-key", "SK", data],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("s3s-fs did not start")


def client(endpoint):
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="AK", aws_secret_access_key="SK",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=64))


def strata_bench(strata, *args):
    out = subprocess.run(["taskset", "-c", "1", strata, "bench", "tiered", *args],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def plain_get(endpoint, objects, concurrency):
    """GETs every object whole, `concurrency` at a time (in order when 1); MB/s."""
    s3 = client(endpoint)
    for o in objects[:1]:
        s3.get_object(Bucket=BUCKET, Key=o["key"])["Body"].read(1)  # connection warm-up

    def get(o):
        return len(s3.get_object(Bucket=BUCKET, Key=o["key"])["Body"].read())

    started = time.perf_counter()
    if concurrency == 1:
        total = sum(get(o) for o in objects)
    else:
        # Ranged GETs of 8 MiB, like a parallel downloader.
        parts = [(o["key"], start, min(start + (8 << 20), o["bytes"]) - 1)
                 for o in objects for start in range(0, o["bytes"], 8 << 20)]

        def ranged(p):
            return len(s3.get_object(Bucket=BUCKET, Key=p[0],
                                     Range=f"bytes={p[1]}-{p[2]}")["Body"].read())
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            total = sum(pool.map(ranged, parts))
    return total / (time.perf_counter() - started) / 1e6


def pinned_python():
    try:
        os.sched_setaffinity(0, {1})
    except (AttributeError, OSError):
        pass


def median(values):
    return statistics.median(values) if values else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=512)
    ap.add_argument("--segment-mb", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--producers", type=int, default=256)
    ap.add_argument("--strata", default=None)
    ap.add_argument("--s3s-fs", default=os.path.expanduser("~/.cache/strata/tools/bin/s3s-fs"))
    args = ap.parse_args()
    strata = args.strata or default_strata()
    tmp = tempfile.mkdtemp(prefix="strata-tiered-bench-")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = start_server(args.s3s_fs, os.path.join(tmp, "s3"), port)
    pinned_python()
    s3 = ["--endpoint", endpoint, "--bucket", BUCKET]
    try:
        replays = []
        for run in range(args.runs):
            r = strata_bench(strata, "replay", *s3, "--dir", os.path.join(tmp, "work"),
                             "--prefix", f"replay{run}", "--mb", str(args.mb),
                             "--segment-mb", str(args.segment_mb), "--keep-objects",
                             "--drop-caches")
            cold, warm = r["phases"]
            settle()
            seq = plain_get(endpoint, r["objects"], 1)
            settle()
            par = plain_get(endpoint, r["objects"], 8)
            replays.append((cold, warm, seq, par, r))
            print(f"run {run}: cold {cold['mb_per_s']:.0f} MB/s, warm {warm['mb_per_s']:.0f} "
                  f"MB/s, plain GET {seq:.0f} MB/s, 8 parallel ranged GETs {par:.0f} MB/s",
                  file=sys.stderr)
        cold = median([c["mb_per_s"] for c, *_ in replays])
        warm = median([w["mb_per_s"] for _, w, *_ in replays])
        seq = median([s for *_, s, _, _ in replays])
        par = median([p for *_, p, _ in replays])
        cold_cpu = median([c["cpu_seconds"] / (c["bytes"] / 1e9) for c, *_ in replays])
        warm_cpu = median([w["cpu_seconds"] / (w["bytes"] / 1e9) for _, w, *_ in replays])
        warm_gets = median([w["gets"] for _, w, *_ in replays])
        puts_gb = median([r["offload"]["puts_per_gb"] for *_, r in replays])
        print(f"\n## Replay of {args.mb} MB held in object storage ({args.segment_mb} MiB "
              f"segments), medians of {args.runs}\n")
        print("| reader | MB/s | vs plain GET | CPU-s per GB | GETs |")
        print("|---|---:|---:|---:|---:|")
        print(f"| boto3 plain GET, whole objects in order | {seq:.0f} | 1.00x | - | - |")
        print(f"| boto3, 8 parallel ranged GETs of 8 MiB | {par:.0f} | {par / seq:.2f}x | - | - |")
        print(f"| strata cold replay | {cold:.0f} | {cold / seq:.2f}x | {cold_cpu:.2f} | "
              f"{median([c['gets'] for c, *_ in replays]):.0f} |")
        print(f"| strata warm replay | {warm:.0f} | {warm / seq:.2f}x | {warm_cpu:.2f} | "
              f"{warm_gets:.0f} |")
        print(f"\nOffload: {puts_gb:.1f} PUT requests per GB.")

        rows = []
        for batch_bytes, batch_ms, ack in SETTINGS:
            results = [strata_bench(strata, "object", *s3, "--dir", os.path.join(tmp, "work"),
                                    "--prefix", f"obj{run}", "--batch-bytes", str(batch_bytes),
                                    "--batch-ms", str(batch_ms), "--ack", ack,
                                    "--producers", str(args.producers),
                                    "--seconds", str(args.seconds))
                       for run in range(args.runs)]
            rows.append((batch_bytes, batch_ms, ack, results))
        print(f"\n## object class appends ({args.producers} producers x 16 KiB appends, "
              f"{args.seconds} s), medians of {args.runs}\n")
        print("| batch | ack | appends/s | MB/s | p50 ms | p99 ms | PUTs per GB | CPU-s per GB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for batch_bytes, batch_ms, ack, results in rows:
            m = lambda k: median([r[k] for r in results])  # noqa: E731
            cpu_gb = median([r["cpu_seconds"] / (r["mb_per_s"] * r["seconds"] / 1e3)
                             for r in results])
            print(f"| {batch_bytes >> 20} MiB / {batch_ms} ms | {ack} | {m('appends_per_s'):.0f} "
                  f"| {m('mb_per_s'):.1f} | {m('p50_us') / 1e3:.2f} | {m('p99_us') / 1e3:.2f} "
                  f"| {m('puts_per_gb'):.0f} | {cpu_gb:.2f} |")
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
