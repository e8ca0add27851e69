#!/usr/bin/env python3
"""The agent's memory at rest, split as issue 15 §2 asks: `etcsync run` with one template
mapping over K keys (100-byte values, data of a throwaway etcd on /dev/shm), SETTLE seconds after
its first render (default 10: past the daemon's release of its start-up pages, 5 s after the first
apply), then `/proc/PID/smaps_rollup` (anonymous against file-backed RSS, the latter mostly the
static binary's pages) and the peak (VmHWM), for K = 100, 10,000, 100,000 (or --keys). With
--updates N it then puts N changes (to the keys in turn), 50 ms apart, waits SETTLE seconds again and reads
the same figures: the steady state of a daemon that is working.

Usage: rss_rollup.py ETCSYNC_BIN [--keys 100,10000] [--settle S] [--updates N]
The agent inherits the environment (MALLOC_ARENA_MAX=… to try the allocator's settings).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_etcd import b64, put, start_etcd  # noqa: E402


def seed(endpoint, prefix, count):
    for first in range(0, count, 128):
        ops = [{"requestPut": {"key": b64(f"{prefix}k{i:07d}"), "value": b64(f"v{i:07d}".ljust(100, "x"))}}
               for i in range(first, min(first + 128, count))]
        request = urllib.request.Request(endpoint + "/v3/kv/txn", data=json.dumps({"success": ops}).encode(), method="POST")
        urllib.request.urlopen(request).read()


def rollup(pid):
    """MiB by smaps_rollup field, and VmHWM in kB."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
    with open(f"/proc/{pid}/status") as f:
        peak = next(line.split()[1] for line in f if line.startswith("VmHWM"))
    return fields, peak


def report(label, pid):
    fields, peak = rollup(pid)
    rss, anonymous = fields.get("Rss", 0), fields.get("Anonymous", 0)
    print(f"{label}: RSS {rss:.1f} MiB = anonymous {anonymous:.1f} MiB + file-backed {rss - anonymous:.1f} MiB;"
          f" peak (VmHWM) {int(peak) / 1024:.1f} MiB", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("--keys", default="100,10000,100000")
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--updates", type=int, default=0)
    args = parser.parse_args()
    binary = args.binary
    etcd, endpoint, data = start_etcd("/usr/bin/etcd", "--quota-backend-bytes", str(8 << 30))
    try:
        for count in [int(k) for k in args.keys.split(",")]:
            prefix = f"/r{count}/"
            seed(endpoint, prefix, count)
            work = tempfile.mkdtemp(prefix="rss-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
            with open(f"{work}/t.tmpl", "w") as f:
                f.write('{{- range gets "%s*" }}\n{{ .Key }}={{ .Value }}\n{{- end }}\n' % prefix)
            with open(f"{work}/c.yaml", "w") as f:
                f.write(f'etcd:\n  endpoints: ["{endpoint}"]\nstate:\n  dir: "{work}/state"\nmappings:\n  - name: t\n'
                        f'    prefix: {prefix}\n    template: "{work}/t.tmpl"\n    dest: "{work}/out"\n')
            agent = subprocess.Popen([binary, "run", "-c", f"{work}/c.yaml", "--log-level", "error"])
            try:
                deadline = time.time() + 120
                while not os.path.exists(f"{work}/out") and time.time() < deadline:
                    time.sleep(0.1)
                time.sleep(args.settle)
                report(f"{count} keys at rest", agent.pid)
                if args.updates:
                    for i in range(args.updates):
                        put(endpoint, f"{prefix}k{i % count:07d}", f"u{i:07d}".ljust(100, "y"))
                        time.sleep(0.05)
                    time.sleep(args.settle)
                    report(f"{count} keys after {args.updates} updates", agent.pid)
            finally:
                agent.terminate()
                agent.wait()
                shutil.rmtree(work, ignore_errors=True)
    finally:
        etcd.terminate()
        etcd.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
