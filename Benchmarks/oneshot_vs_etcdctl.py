#!/usr/bin/env python3
"""One-shot sync beside its floor, on the same etcd in the same run.

For K = 1k, 10k, 100k keys (100-byte values) under one prefix, it times, whole process:
  - `etcdctl get --prefix PREFIX > FILE` (the floor a shell script gets), and
  - `etcsync sync -c CONFIG` rendering the prefix into one file through a template,
alternating the two, N times each, with a fresh state and output for every etcsync run.
Peak RSS comes from GNU time (%M). Prints a table of medians.

Usage: oneshot_vs_etcdctl.py --etcsync BIN [--etcd /usr/bin/etcd] [--etcdctl /usr/bin/etcdctl]
                             [--runs 5] [--keys 1000,10000,100000]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


from local_etcd import b64, start_etcd


def seed(endpoint, prefix, count, start=0):
    for first in range(start, count, 128):
        ops = [{"requestPut": {"key": b64(f"{prefix}key{i:07d}"), "value": b64(f"v{i:07d}".ljust(100, "x"))}}
               for i in range(first, min(first + 128, count))]
        request = urllib.request.Request(endpoint + "/v3/kv/txn", data=json.dumps({"success": ops}).encode(), method="POST")
        urllib.request.urlopen(request).read()


def timed(argv, stdout=None):
    """Runs argv under GNU time: (wall seconds, peak RSS KiB)."""
    with tempfile.NamedTemporaryFile("r") as report:
        t0 = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%M"] + argv, stdout=stdout, check=True)
        wall = time.perf_counter() - t0
        return wall, int(report.read().strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--etcsync", required=True)
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--etcdctl", default="/usr/bin/etcdctl")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keys", default="1000,10000,100000")
    a = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        sys.exit("GNU time is needed (apt-get install time)")
    work = tempfile.mkdtemp(prefix="etcsync-oneshot-")
    etcd, endpoint, data = start_etcd(a.etcd, "--quota-backend-bytes", str(8 << 30))
    try:
        env = dict(os.environ, ETCDCTL_API="3")
        rows = []
        seeded = 0
        for count in [int(k) for k in a.keys.split(",")]:
            prefix = f"/oneshot{count}/"
            seed(endpoint, prefix, count)
            seeded += count
            with open(os.path.join(work, "t.tmpl"), "w") as f:
                f.write('{{- range gets "%s*" }}\n{{ .Key }}={{ .Value }}\n{{- end }}\n' % prefix)
            config = os.path.join(work, "etcsync.yaml")
            with open(config, "w") as f:
                f.write(f'etcd:\n  endpoints: ["{endpoint}"]\nstate:\n  dir: "{work}/state"\nmappings:\n'
                        f'  - name: bench\n    prefix: "{prefix}"\n    template: "{work}/t.tmpl"\n    dest: "{work}/out/bench.conf"\n')
            ours, floor = [], []
            for _ in range(a.runs):
                with open(os.path.join(work, "etcdctl.out"), "w") as out:
                    floor.append(timed([a.etcdctl, "--endpoints", endpoint, "get", "--prefix", prefix], stdout=out))
                shutil.rmtree(os.path.join(work, "state"), ignore_errors=True)
                shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)
                ours.append(timed([a.etcsync, "sync", "-c", config, "--log-level", "error"], stdout=subprocess.DEVNULL))
            lines = open(os.path.join(work, "out", "bench.conf")).read().count("=")
            if lines != count:
                sys.exit(f"etcsync wrote {lines} entries, expected {count}")
            rows.append((count, statistics.median(w for w, _ in ours), max(r for _, r in ours),
                         statistics.median(w for w, _ in floor), max(r for _, r in floor)))
        print(f"one-shot sync into one file, whole process, median of {a.runs} (peak RSS: max)")
        print("| keys | etcsync sync s | etcsync RSS MiB | etcdctl get --prefix > file s | etcdctl RSS MiB | etcsync / etcdctl |")
        print("|---|---|---|---|---|---|")
        for count, ours_s, ours_kb, floor_s, floor_kb in rows:
            print(f"| {count} | {ours_s:.3f} | {ours_kb / 1024:.1f} | {floor_s:.3f} | {floor_kb / 1024:.1f} | {ours_s / floor_s:.2f} |")
    finally:
        etcd.terminate()
        etcd.wait()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
