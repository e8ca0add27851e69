#!/usr/bin/env python3
"""Where an applied batch's time goes, stage by stage (etcsync_apply_stage_seconds).

Starts its own etcd (free loopback ports, data in /dev/shm) and `etcsync run` with metrics on,
with one mapping (a template into one file, a swapped tree, or an in-place tree) over a
prefix of --keys keys and a reload command; then puts --changes single-key updates through
etcd's JSON gateway, one at a time with a random gap, waits until the last is on disk, scrapes
/metrics and prints, per stage, the mean time from the change's arrival and the mean cost of
the step from the stage before, with the p50 and p99 upper bounds of its histogram bucket.

Usage: stage_breakdown.py --etcsync BIN [--kind template|tree|tree-in-place] [--changes 200]
                          [--keys 100] [--reload true] [--etcd /usr/bin/etcd]
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

STAGES = ["apply_start", "render", "fsync", "rename", "dir_fsync", "reload"]


from local_etcd import b64, free_port, start_etcd


def post(endpoint, path, body):
    request = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(), method="POST")
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def wait_for(condition, what, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def scrape(port):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def histograms(text, name):
    """label value -> {"count", "sum", "buckets": [(le, cumulative)]} for a histogram with one label."""
    found = {}
    for line in text.splitlines():
        if not line.startswith(name + "_"):
            continue
        metric, _, value = line.rpartition(" ")
        labels = dict(part.split("=", 1) for part in metric[metric.find("{") + 1:-1].split(",")) if "{" in metric else {}
        labels = {k: v.strip('"') for k, v in labels.items()}
        key = labels.get("stage", "")
        entry = found.setdefault(key, {"count": 0.0, "sum": 0.0, "buckets": []})
        if metric.startswith(name + "_count"):
            entry["count"] = float(value)
        elif metric.startswith(name + "_sum"):
            entry["sum"] = float(value)
        elif metric.startswith(name + "_bucket"):
            le = labels["le"]
            entry["buckets"].append((float("inf") if le == "+Inf" else float(le), float(value)))
    return found


def quantile(entry, q):
    """The upper bound of the bucket holding quantile q (what a histogram can say)."""
    if not entry["count"]:
        return None
    target = q * entry["count"]
    for le, cumulative in sorted(entry["buckets"]):
        if cumulative >= target:
            return le
    return None


def ms(seconds):
    if seconds is None:
        return "-"
    return "inf" if seconds == float("inf") else f"{seconds * 1000:.3f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--etcsync", required=True)
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--kind", default="template", choices=["template", "tree", "tree-in-place"])
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--gap-ms", default="5,15")
    ap.add_argument("--reload", default="true", help="the reload command, run through sh -c")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="etcsync-stages-")
    metrics = free_port()
    etcd, endpoint, data = start_etcd(a.etcd)
    procs = [etcd]
    try:
        prefix = "/stages/"
        value = lambda i, n: f"v{n}.{i}".ljust(100, "x")
        post(endpoint, "/v3/kv/txn", {"success": [{"requestPut": {"key": b64(f"{prefix}k{i:05d}"), "value": b64(value(i, 0))}}
                                                  for i in range(a.keys)]})
        out = os.path.join(work, "out")
        mapping = {
            "template": f'    template: "{work}/t.tmpl"\n    dest: "{out}"\n',
            "tree": f'    kind: tree\n    dest: "{out}"\n',
            "tree-in-place": f'    kind: tree\n    swap: in-place\n    dest: "{out}"\n',
        }[a.kind]
        with open(os.path.join(work, "t.tmpl"), "w") as f:
            f.write('{{- range gets "%s*" }}\n{{ .Key }}={{ .Value }}\n{{- end }}\n' % prefix)
        config = os.path.join(work, "etcsync.yaml")
        with open(config, "w") as f:
            f.write(f'etcd:\n  endpoints: ["{endpoint}"]\nstate:\n  dir: "{work}/state"\nmetrics:\n  listen: 127.0.0.1:{metrics}\n'
                    f'mappings:\n  - name: stages\n    prefix: "{prefix}"\n{mapping}    reload: [sh, -c, {json.dumps(a.reload)}]\n')
        procs.append(subprocess.Popen([a.etcsync, "run", "-c", config, "--log-level", "error"], stdout=subprocess.DEVNULL))
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics}/readyz", timeout=1).status == 200, "etcsync ready")
        lo, hi = (float(x) / 1000 for x in a.gap_ms.split(","))
        key = f"{prefix}k00000"
        last = None
        for n in range(1, a.changes + 1):
            last = value(0, n)
            post(endpoint, "/v3/kv/put", {"key": b64(key), "value": b64(last)})
            time.sleep(random.uniform(lo, hi))
        path = out if a.kind == "template" else os.path.join(out, "k00000")
        wait_for(lambda: last in open(path).read(), "the last change on disk")
        stages = {}
        wait_for(lambda: stages.update(histograms(scrape(metrics), "etcsync_apply_stage_seconds")) or
                 stages.get("reload", {}).get("count", 0) >= stages.get("dir_fsync", {}).get("count", 1), "the last reload")
        propagation = histograms(scrape(metrics), "etcsync_propagation_seconds").get("", {"count": 0, "sum": 0})
        print(f"etcsync stage breakdown: {a.kind}, {a.keys} keys, {a.changes} changes, reload `{a.reload}` "
              f"({stages.get('apply_start', {}).get('count', 0):.0f} batches)")
        print(f"{'stage':<12} {'batches':>7} {'from arrival, mean ms':>22} {'step, mean ms':>14} {'p50 ≤ ms':>9} {'p99 ≤ ms':>9}")
        previous = 0.0
        for stage in STAGES:
            entry = stages.get(stage)
            if not entry or not entry["count"]:
                print(f"{stage:<12} {0:>7} {'-':>22} {'-':>14} {'-':>9} {'-':>9}")
                continue
            mean = entry["sum"] / entry["count"]
            print(f"{stage:<12} {entry['count']:>7.0f} {ms(mean):>22} {ms(mean - previous):>14} {ms(quantile(entry, 0.5)):>9} "
                  f"{ms(quantile(entry, 0.99)):>9}")
            previous = mean
        if propagation["count"]:
            print(f"{'propagation':<12} {propagation['count']:>7.0f} {ms(propagation['sum'] / propagation['count']):>22}"
                  "   (etcsync_propagation_seconds: arrival to files on disk, and the reload when it ran inline)")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
