#!/usr/bin/env python3
"""Journal benchmark, side by side with fio on the same disk in the same run.

Runs each comparison RUNS times (default 3) and prints medians as a Markdown table:
  1. fsync=never, 1 KiB records in 64 KiB batches, one partition, vs fio sequential
     buffered write with 64 KiB blocks (same volume, same directory).
  2. fsync=always, 64 concurrent appenders of one 1 KiB record each, vs fio writing 1 KiB
     blocks with an fdatasync after every write (one appender that fsyncs every write).
  3. Sequential read of the data written in (1).
  4. Reopen of a partition holding 5 GB after SIGKILL: time until a read and an append
     are served again.

Usage: benches/journal.py [--runs N] [--dir DIR] [--strata PATH] [--skip-reopen]
The strata binary defaults to the release build under $CARGO_TARGET_DIR (or target/).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_strata():
    # The same default as scripts/test.sh and .ci/run.
    target = os.environ.get("CARGO_TARGET_DIR",
                            os.path.join(os.path.expanduser("~"), ".cache", "strata", "target"))
    for sub in ("x86_64-unknown-linux-gnu/release", "release"):
        path = os.path.join(target, sub, "strata")
        if os.path.exists(path):
            return path
    sys.exit("no release strata binary; run: cargo build --release -p strata")


def settle():
    """Starts every measurement from the same state: dirty pages written back and, when
    running as root, the page cache dropped."""
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def fio(directory, name, *args):
    settle()
    out = subprocess.run(
        ["fio", f"--name={name}", f"--directory={directory}", "--ioengine=psync",
         "--output-format=json", *args],
        check=True, capture_output=True, text=True).stdout
    job = json.loads(out[out.index("{"):])["jobs"][0]["write"]
    for f in os.listdir(directory):
        if f.startswith(name):
            os.remove(os.path.join(directory, f))
    return job


def bench(strata, directory, *args):
    settle()
    out = subprocess.run([strata, "bench", "journal", "--dir", directory, "--json", *args],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def phase(result, name):
    return next(p for p in result["phases"] if p["phase"] == name)


def du_bytes(path):
    total = 0
    for base, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(base, f))
            except FileNotFoundError:
                pass
    return total


def reopen_after_kill(strata, directory, gigabytes):
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    writer = subprocess.Popen(
        [strata, "bench", "journal", "--dir", directory, "--fsync", "never", "--keep",
         "--no-read", "--total-mb", str(int(gigabytes * 1000 * 1.2)), "--segment-mb", "256"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = gigabytes * 1e9
    deadline = time.time() + 900
    while du_bytes(directory) < target:
        if writer.poll() is not None or time.time() > deadline:
            sys.exit("writer ended before reaching the target size")
        time.sleep(0.5)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    # Cold start: dirty pages written back and the page cache dropped (as root), so the
    # reopen reads the segment tails from the disk, as after a power cut.
    settle()
    out = subprocess.run([strata, "bench", "reopen", "--dir", directory, "--json"],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    shutil.rmtree(directory, ignore_errors=True)
    return result


def median(values):
    return statistics.median(values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=os.path.join(ROOT, "bench-data"))
    ap.add_argument("--strata", default=None)
    ap.add_argument("--volume-mb", type=int, default=2048)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--reopen-gb", type=float, default=5.0)
    ap.add_argument("--skip-reopen", action="store_true")
    a = ap.parse_args()
    strata = a.strata or default_strata()
    os.makedirs(a.dir, exist_ok=True)
    rows = {k: [] for k in ("fio_seq", "strata_seq", "strata_seq_cpu", "strata_seq2", "strata_seq2_cpu", "fio_fsync", "strata_group",
                            "strata_group_p99", "strata_group_cpu", "read", "reopen")}
    for run in range(a.runs):
        print(f"run {run + 1}/{a.runs}", file=sys.stderr)
        w = fio(a.dir, "seqwrite", "--rw=write", "--bs=64k", f"--size={a.volume_mb}m")
        rows["fio_seq"].append(w["bw_bytes"] / 1e6)
        r = bench(strata, a.dir, "--record-size", "1024", "--batch-bytes", "65536",
                  "--fsync", "never", "--total-mb", str(a.volume_mb))
        rows["strata_seq"].append(phase(r, "append")["mb_per_s"])
        rows["strata_seq_cpu"].append(phase(r, "append")["cpu_seconds_per_million"])
        rows["read"].append(phase(r, "read")["mb_per_s"])
        r = bench(strata, a.dir, "--record-size", "1024", "--batch-bytes", "65536",
                  "--fsync", "never", "--total-mb", str(a.volume_mb), "--concurrency", "2", "--no-read")
        rows["strata_seq2"].append(phase(r, "append")["mb_per_s"])
        rows["strata_seq2_cpu"].append(phase(r, "append")["cpu_seconds_per_million"])
        w = fio(a.dir, "fsyncwrite", "--rw=write", "--bs=1k", "--size=256m", "--fdatasync=1",
                "--time_based", f"--runtime={a.seconds}")
        rows["fio_fsync"].append(w["iops"])
        r = bench(strata, a.dir, "--record-size", "1024", "--batch-bytes", "1024",
                  "--concurrency", "64", "--fsync", "always", "--seconds", str(a.seconds), "--no-read")
        rows["strata_group"].append(phase(r, "append")["records_per_s"])
        rows["strata_group_p99"].append(phase(r, "append")["p99_us"])
        rows["strata_group_cpu"].append(phase(r, "append")["cpu_seconds_per_million"])
        if not a.skip_reopen:
            rows["reopen"].append(reopen_after_kill(strata, os.path.join(a.dir, "reopen"), a.reopen_gb))
    m = {k: median(v) for k, v in rows.items() if v and k != "reopen"}
    print(f"| measurement | fio | strata | ratio | target |")
    print(f"|---|---|---|---|---|")
    print(f"| sequential append, fsync=never, 1 KiB records / 64 KiB batches (MB/s) | "
          f"{m['fio_seq']:.0f} | {m['strata_seq']:.0f} ({m['strata_seq_cpu']:.2f} CPU-s per M records) | "
          f"{m['strata_seq'] / m['fio_seq']:.2f} | >= 0.85 |")
    print(f"| same, two appenders on the one partition (MB/s) | "
          f"{m['fio_seq']:.0f} | {m['strata_seq2']:.0f} ({m['strata_seq2_cpu']:.2f} CPU-s per M records) | "
          f"{m['strata_seq2'] / m['fio_seq']:.2f} | >= 0.85 |")
    print(f"| fsync=always, 64 appenders of 1 KiB vs 1 appender fsyncing each write (appends/s) | "
          f"{m['fio_fsync']:.0f} | {m['strata_group']:.0f} (p99 {m['strata_group_p99']:.0f} µs, "
          f"{m['strata_group_cpu']:.2f} CPU-s per M) | {m['strata_group'] / m['fio_fsync']:.1f}x | >= 50x |")
    print(f"| sequential read of recently written data (MB/s) | - | {m['read']:.0f} | - | >= 1000 |")
    if rows["reopen"]:
        serving = median([r["serving_seconds"] for r in rows["reopen"]])
        size = median([r["partition_bytes"] for r in rows["reopen"]])
        print(f"| reopen after SIGKILL of a {size / 1e9:.1f} GB partition: serving reads and appends (s) | - | "
              f"{serving:.3f} | - | < 1 |")
    print(f"\nmedians of {a.runs} runs; raw: {json.dumps(rows)}", file=sys.stderr)


if __name__ == "__main__":
    main()
