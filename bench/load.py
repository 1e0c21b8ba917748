#!/usr/bin/env python3
"""Bounded load test of kobo-exporter (loopback only; stops by itself).

Starts the exporter (default: the release binary on the bundled demo hub, task metrics refreshed at every
scrape), scrapes /metrics from several keep-alive connections for a fixed time, and prints the requests
served, errors, p50/p99 latency and the exporter's RSS before and after. Exit status 1 if any request failed
or the RSS grew by more than 10% (and 2 MiB).

    cargo build --release && bench/load.py --seconds 30 --connections 8
"""
import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/kobo-exporter"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--path", default="/metrics")
    parser.add_argument("--url", help="KOBO_URL (default: the demo hub of Rocket.toml)")
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} does not exist: run cargo build --release first")

    port = free_port()
    env = dict(os.environ, ROCKET_PORT=str(port), ROCKET_ADDRESS="127.0.0.1", ROCKET_LOG_LEVEL="critical",
               KOBO_TASK_REFRESH_INTERVAL="0")
    env.pop("ROCKET_PROFILE", None)
    if args.url:
        env["KOBO_URL"] = args.url
    exporter = subprocess.Popen([args.binary], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/-/healthy")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or exporter.poll() is not None:
                sys.exit("the exporter did not start")
            time.sleep(0.05)

        # Warm-up, then the RSS baseline.
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(200):
            c.request("GET", args.path)
            c.getresponse().read()
        rss_before = rss_kib(exporter.pid)

        latencies, errors, lock = [], [0], threading.Lock()
        stop_at = time.monotonic() + args.seconds

        def worker():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine, failed = [], 0
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    conn.request("GET", args.path)
                    response = conn.getresponse()
                    body = response.read()
                    if response.status != 200 or b"kobo_up 1" not in body:
                        failed += 1
                except (OSError, http.client.HTTPException):
                    failed += 1
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)
                errors[0] += failed

        threads = [threading.Thread(target=worker) for _ in range(args.connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rss_after = rss_kib(exporter.pid)
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)

    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(f"kobo-exporter load: {args.connections} keep-alive connections, {args.seconds:.0f} s, GET {args.path}")
    print()
    print("| requests | per second | errors | p50 ms | p99 ms | RSS before KiB | RSS after KiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {len(latencies)} | {len(latencies) / args.seconds:.0f} | {errors[0]} | {p(0.5):.2f} | {p(0.99):.2f} "
          f"| {rss_before} | {rss_after} |")
    grew = rss_after - rss_before > max(0.10 * rss_before, 2048)
    if errors[0] or grew:
        print("FAILED: " + ("errors " if errors[0] else "") + ("memory grew" if grew else ""))
        sys.exit(1)


if __name__ == "__main__":
    main()
