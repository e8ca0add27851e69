#!/usr/bin/env python3
"""The fleet benchmark's floor: N `etcdctl watch --prefix` processes on one etcd, no agent.

What the last of N watchers needs to see a put on this machine, when all N share its cores:
starts its own etcd (data on /dev/shm, free loopback ports), N etcdctl watchers on one
prefix, then puts --changes values one at a time through etcd's JSON gateway with a random gap,
and times from each put's request to the moment the last watcher's output showed the value
(one epoll loop reads every watcher's pipe). Prints p50/p99 per N beside the put round trip.
An agent cannot deliver a change to N processes faster than N bare watchers receive it.

Usage: watch_floor.py [--agents 1,200] [--changes 100] [--etcd /usr/bin/etcd] [--etcdctl /usr/bin/etcdctl]
"""
import argparse
import json
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from local_etcd import b64, start_etcd  # noqa: E402


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(a, count):
    etcd, endpoint, data = start_etcd(a.etcd, prefix="etcd-floor-")
    procs = [etcd]
    try:
        env = dict(os.environ, ETCDCTL_API="3")
        poller = select.epoll()
        watchers = {}
        for _ in range(count):
            proc = subprocess.Popen([a.etcdctl, "--endpoints", endpoint, "watch", "--prefix", "/floor/"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            procs.append(proc)
            os.set_blocking(proc.stdout.fileno(), False)
            poller.register(proc.stdout.fileno(), select.EPOLLIN)
            watchers[proc.stdout.fileno()] = b""
        time.sleep(1 + count / 50)  # every watch created

        def put(value):
            request = urllib.request.Request(endpoint + "/v3/kv/put", method="POST",
                                             data=json.dumps({"key": b64("/floor/k"), "value": b64(value)}).encode())
            started = time.perf_counter()
            urllib.request.urlopen(request, timeout=10).read()
            return started, time.perf_counter() - started

        latencies, round_trips = [], []
        for n in range(a.warmup + a.changes):
            token = f"V{n:06d}X".encode()
            for fd in watchers:
                watchers[fd] = b""
            started, round_trip = put(token.decode())
            pending = set(watchers)
            last = None
            deadline = time.perf_counter() + 10
            while pending and time.perf_counter() < deadline:
                for fd, _ in poller.poll(0.5):
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    watchers[fd] = (watchers[fd] + chunk)[-256:]
                    if fd in pending and token in watchers[fd]:
                        pending.discard(fd)
                        last = time.perf_counter()
            if pending:
                sys.exit(f"N={count}: {len(pending)} watchers never saw change {n}")
            if n >= a.warmup:
                latencies.append(last - started)
                round_trips.append(round_trip)
            time.sleep(random.uniform(0.5 * a.gap, 1.5 * a.gap))
        return latencies, round_trips
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", default="1,200")
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--gap", type=float, default=0.2)
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--etcdctl", default="/usr/bin/etcdctl")
    a = ap.parse_args()
    print(f"watch floor: N etcdctl watchers on one etcd, {a.changes} changes, {os.cpu_count()} CPUs")
    print("| N | last watcher p50 | p99 | put round trip p50 |")
    print("|---|---|---|---|")
    for count in [int(n) for n in a.agents.split(",")]:
        latencies, round_trips = measure(a, count)
        print(f"| {count} | {percentile(latencies, 0.5) * 1000:.1f} ms | {percentile(latencies, 0.99) * 1000:.1f} ms "
              f"| {statistics.median(round_trips) * 1000:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
