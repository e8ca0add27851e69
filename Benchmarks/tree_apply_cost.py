#!/usr/bin/env python3
"""What a large in-place tree costs the daemon (docs/benchmarks.md, "A large tree's memory: the
state file"): a throwaway etcd (data on /dev/shm) with N keys of 100 bytes, then for each binary
given, one after the other: `etcsync run` with one in-place tree mapping over them, its peak
memory (VmHWM) 8 s after the first sync, then, once the daemon is idle (its start-up drift check
of every file done), 20 one-key changes 0.3 s apart: the time from the put's reply until the
file holds the new value (p50, max), the agent's CPU over the changes divided by their number
(/proc/PID/stat) and the peak after them.

Usage: tree_apply_cost.py N ETCSYNC_BIN [ETCSYNC_BIN…]   e.g. tree_apply_cost.py 100000 A B A B
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_etcd import put, start_etcd, stop  # noqa: E402
from rss_rollup import seed  # noqa: E402

CHANGES = 20


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_mib(pid):
    return next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmHWM")) / 1024


def measure(binary, endpoint, prefix):
    work = tempfile.mkdtemp(prefix="tree-cost-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    agent = None
    try:
        with open(f"{work}/c.yaml", "w") as f:
            f.write(f'etcd:\n  endpoints: ["{endpoint}"]\nstate:\n  dir: "{work}/state"\nmappings:\n  - name: t\n'
                    f'    kind: tree\n    swap: in-place\n    prefix: {prefix}\n    dest: "{work}/out"\n')
        agent = subprocess.Popen([binary, "run", "-c", f"{work}/c.yaml", "--log-level", "error"])
        while not os.path.exists(f"{work}/state/state.json"):
            time.sleep(0.05)
        time.sleep(8)
        peak = peak_mib(agent.pid)
        # The daemon checks every file once after its first sync (drift repair's start-up
        # check): the changes are measured once it is idle (under 10 ms of CPU in a second).
        for _ in range(300):
            idle = cpu_seconds(agent.pid)
            time.sleep(1)
            if cpu_seconds(agent.pid) - idle < 0.01:
                break
        before = cpu_seconds(agent.pid)
        latencies = []
        for i in range(CHANGES):
            value = f"u{i}" * 10
            start = time.time()
            put(endpoint, f"{prefix}k{i:07d}", value)
            while True:
                try:
                    with open(f"{work}/out/k{i:07d}") as f:
                        if f.read() == value:
                            break
                except OSError:
                    pass
                time.sleep(0.0005)
            latencies.append((time.time() - start) * 1000)
            time.sleep(0.3)
        cpu = (cpu_seconds(agent.pid) - before) / CHANGES * 1000
        latencies.sort()
        print(f"{binary}: peak {peak:.1f} MiB (after the changes {peak_mib(agent.pid):.1f}), on disk p50"
              f" {latencies[CHANGES // 2]:.1f} ms max {latencies[-1]:.1f} ms, CPU {cpu:.1f} ms per change", flush=True)
    finally:
        stop([agent], [work])


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    etcd, endpoint, data = start_etcd("/usr/bin/etcd", "--quota-backend-bytes", str(8 << 30))
    try:
        seed(endpoint, "/r/", int(sys.argv[1]))
        for binary in sys.argv[2:]:
            measure(binary, endpoint, "/r/")
    finally:
        stop([etcd], [data])


if __name__ == "__main__":
    main()
