#!/usr/bin/env python3
"""Work-queue throughput, Strata's agent API beside NATS JetStream and Redis Streams, in one
run: 4 producers and 8 consumers, 1 KiB messages, send -> fetch -> ack, each message acked on
its own request (benches/agentq, a Go load generator: net/http, nats.go, go-redis). Every
server runs alone on core 0, the load generator on core 1; each system is started fresh per
run and the order alternates between runs. Reports medians of messages per second and the
server's CPU-seconds per million messages (from /proc/PID/stat), how busy the server's and
the load generator's cores were (a load core near 1.0 means the load generator limits the
run), and the ratios.

Durability, as close as each allows:
- Strata: a queue of class `local` (segment files, `fsync = "interval:100"`, the default:
  written before the answer, fsynced within 100 ms); its acks' marks in the state store.
- NATS JetStream: a work-queue stream on file storage (written before the PubAck, fsynced
  every `sync_interval`, 2 minutes by default), a durable pull consumer with explicit acks,
  each ack confirmed (AckSync).
- Redis Streams: `appendonly yes`, `appendfsync everysec` (written before the answer,
  fsynced every second); XADD, XREADGROUP, XACK.

With `--batch-ack`, each fetched batch is acknowledged at once, as each system allows:
Strata one ack of many leases, Redis one XACK of many ids, NATS (whose work-queue streams
take explicit acks only) the batch's acks sent back to back, the last one confirmed.

With `--rate R`, send-to-deliver latency instead: `--senders` producers (16) send R
messages a second in all for `--seconds`, each payload stamped with its send time, and one consumer notes when each
reaches it (before acking it); Strata once per storage class (`memory`, `local`, `object`
on a local s3s-fs server), beside NATS JetStream and Redis Streams. Reports the medians of
p50, p99 and p99.9 over the runs.

Peers: `apt-get install redis-server`; `go install github.com/nats-io/nats-server/v2@v2.15.3`.

    python3 benches/agent_peers.py [--runs 3] [--messages 100000] [--batch-ack] [--strata PATH]
    python3 benches/agent_peers.py --rate 200 --seconds 30 [--runs 3]
"""
import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from agent_latency import (agent_config, cpu_seconds, free_port, object_store,  # noqa: E402
                           serve, start_s3, wait_port)
from journal import default_strata  # noqa: E402

AGENTQ = os.path.expanduser("~/.cache/strata/tools/bin/agentq")
NATS = shutil.which("nats-server") or os.path.expanduser("~/go/bin/nats-server")


def build_agentq():
    subprocess.run(["go", "build", "-o", AGENTQ, "."], cwd=os.path.join(ROOT, "benches", "agentq"),
                   check=True)


def start_strata(binary, tmp, port):
    return serve(binary, tmp, agent_config(tmp, port, "max_queue_depth = 10000000\n"))


def start_nats(_binary, tmp, port):
    return subprocess.Popen(["taskset", "-c", "0", NATS, "-js", "-sd", os.path.join(tmp, "nats"),
                             "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_redis(_binary, tmp, port):
    return subprocess.Popen(["taskset", "-c", "0", "redis-server", "--port", str(port),
                             "--bind", "127.0.0.1", "--dir", tmp, "--appendonly", "yes",
                             "--appendfsync", "everysec", "--save", "", "--protected-mode", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


SYSTEMS = {"strata": start_strata, "nats": start_nats, "redis": start_redis}
S3S_FS = os.path.expanduser("~/.cache/strata/tools/bin/s3s-fs")
LATENCY_SYSTEMS = ["strata-memory", "strata-local", "strata-object", "nats", "redis"]


def run_latency(system, strata, args):
    """One paced run of `system` (`strata-<class>`, `nats` or `redis`): its latencies."""
    tmp = tempfile.mkdtemp(prefix=f"strata-agentq-{system}-")
    port = free_port()
    s3 = None
    kind, _, storage = system.partition("-")
    try:
        if storage == "object":
            s3, endpoint = start_s3(S3S_FS, os.path.join(tmp, "s3"))
            proc = serve(strata, tmp, agent_config(tmp, port, object_store(endpoint)))
        else:
            proc = SYSTEMS[kind](strata, tmp, port)
        try:
            wait_port(port, proc, system)
            out = subprocess.run(["taskset", "-c", "1", AGENTQ, "-system", kind,
                                  "-addr", f"127.0.0.1:{port}", "-rate", str(args.rate),
                                  "-seconds", str(args.seconds),
                                  "-producers", str(args.senders),
                                  "-consumers", "1", "-size", str(args.size),
                                  "-storage", storage or "local"],
                                 check=True, capture_output=True, text=True,
                                 timeout=args.seconds * 10 + 120).stdout
            r = json.loads(out.strip().splitlines()[-1])
            r["system"] = system
            return r
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
    finally:
        if s3 is not None:
            s3.kill()
            s3.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def alternate(systems, runs, one):
    """`one(system)` for every system, `runs` times, the order reversed every other run:
    each system's results, printed as they come."""
    results = {s: [] for s in systems}
    for run in range(runs):
        for system in (systems if run % 2 == 0 else list(reversed(systems))):
            r = one(system)
            results[system].append(r)
            print(json.dumps(r), flush=True)
    return results


def latency_main(args, strata):
    asked = args.systems.split(",")
    systems = [s for s in LATENCY_SYSTEMS if s in asked or s.split("-")[0] in asked]
    results = alternate(systems, args.runs, lambda s: run_latency(s, strata, args))
    keys = ("p50_ms", "p99_ms", "p999_ms", "max_ms")
    print(f"\nmedians of {args.runs} runs: {args.rate:g} messages/s of {args.size} B for "
          f"{args.seconds:g} s, {args.senders} producers, one consumer; send -> deliver")
    print(f"{'system':14} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8}")
    for s in systems:
        m = {k: statistics.median(r[k] for r in results[s]) for k in keys}
        print(f"{s:14} {m['p50_ms']:8.2f} {m['p99_ms']:8.2f} {m['p999_ms']:9.2f} "
              f"{m['max_ms']:8.2f}")


def run_one(system, strata, args):
    tmp = tempfile.mkdtemp(prefix=f"strata-agentq-{system}-")
    port = free_port()
    proc = SYSTEMS[system](strata, tmp, port)
    try:
        wait_port(port, proc, system)
        cpu0 = cpu_seconds(proc.pid)
        load0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(["taskset", "-c", "1", AGENTQ, "-system", system,
                              "-addr", f"127.0.0.1:{port}", "-messages", str(args.messages),
                              "-producers", str(args.producers), "-consumers", str(args.consumers),
                              "-size", str(args.size)] + (["-batch-ack"] if args.batch_ack else []),
                             check=True, capture_output=True, text=True, timeout=1800).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["cpu_s_per_m"] = (cpu_seconds(proc.pid) - cpu0) / r["messages"] * 1e6
        load = resource.getrusage(resource.RUSAGE_CHILDREN)
        # How busy the load generator's core was: near 1.0, it is what limits the run.
        r["load_core"] = ((load.ru_utime - load0.ru_utime) + (load.ru_stime - load0.ru_stime)) / r["seconds"]
        r["server_core"] = r["cpu_s_per_m"] * r["msgs_per_sec"] / 1e6
        return r
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--producers", type=int, default=4)
    ap.add_argument("--consumers", type=int, default=8)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--strata", default=None)
    ap.add_argument("--systems", default="strata,nats,redis")
    ap.add_argument("--batch-ack", action="store_true",
                    help="ack each fetched batch at once, as each system allows")
    ap.add_argument("--rate", type=float, default=0,
                    help="latency mode: messages a second, one producer and one consumer")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--senders", type=int, default=16,
                    help="latency mode: producers sharing the rate (an object-class send "
                         "waits for its object, tens of ms: one sender alone cannot keep up)")
    args = ap.parse_args()
    strata = args.strata or default_strata()
    build_agentq()
    if args.rate > 0:
        latency_main(args, strata)
        return
    systems = args.systems.split(",")
    results = alternate(systems, args.runs, lambda s: run_one(s, strata, args))
    keys = ("msgs_per_sec", "cpu_s_per_m", "server_core", "load_core")
    med = {s: {k: statistics.median(r[k] for r in rs) for k in keys} for s, rs in results.items()}
    print(f"\nmedians of {args.runs} runs: {args.messages} messages of {args.size} B, "
          f"{args.producers} producers, {args.consumers} consumers, "
          f"{'batched' if args.batch_ack else 'per-message'} acks")
    print(f"{'system':8} {'msg/s':>10} {'CPU-s/M':>9} {'server core':>12} {'load core':>10}")
    for s in systems:
        m = med[s]
        print(f"{s:8} {m['msgs_per_sec']:10.0f} {m['cpu_s_per_m']:9.1f} {m['server_core']:12.2f} "
              f"{m['load_core']:10.2f}")
    if "strata" in med:
        for s in systems:
            if s != "strata":
                print(f"strata/{s}: {med['strata']['msgs_per_sec'] / med[s]['msgs_per_sec']:.2f}x "
                      f"throughput, {med['strata']['cpu_s_per_m'] / med[s]['cpu_s_per_m']:.2f}x CPU per message")


if __name__ == "__main__":
    main()
