#!/usr/bin/env python3
"""A large tree's initial sync beside the file system's own floor, on the same directory.

Seeds K keys (100-byte values) in a throwaway etcd, then times, each after a `sync` of the
machine, in a fresh directory under --dir:
  - the floor: K files created, written and closed from Python (what a swapped tree's staging
    does at least), then the same with a rename of each over its final name (what an in-place
    tree does at least), each followed by one sync;
  - `etcsync sync` of a tree mapping, in place and swapped;
  - `etcsync sync` of a template rendering the same keys into one file (issue 15's yardstick).
Prints a table of medians over --runs. A tree cannot sync faster than its file system creates
its files: on a VM's ext4 that floor is far above a template's render.

Usage: tree_sync_floor.py --etcsync BIN [--etcsync BIN_B] [--only TEXT] [--keys 100000] [--dir /tmp] [--runs 3]
                          [--etcd /usr/bin/etcd]
"""
import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from local_etcd import b64, start_etcd


def floor(base, count, rename):
    directory = tempfile.mkdtemp(prefix="floor-", dir=base)
    try:
        os.sync()
        started = time.perf_counter()
        for i in range(count):
            final = f"{directory}/k{i:07d}"
            path = f"{directory}/.k{i:07d}.tmp-{secrets.token_hex(8)}" if rename else final
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            os.write(fd, b"v" * 100)
            os.close(fd)
            if rename:
                os.rename(path, final)
        os.sync()
        return time.perf_counter() - started
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        os.sync()


def etcsync(binary, base, endpoint, mapping):
    work = tempfile.mkdtemp(prefix="tree-sync-", dir=base)
    try:
        with open(f"{work}/t.tmpl", "w") as f:
            f.write('{{- range gets "/t/*" }}\n{{ .Key }}={{ .Value }}\n{{- end }}\n')
        config = f"{work}/c.yaml"
        with open(config, "w") as f:
            f.write(f'etcd:\n  endpoints: ["{endpoint}"]\nstate:\n  dir: "{work}/state"\nmappings:\n  - name: t\n'
                    f'    prefix: /t/\n    dest: "{work}/out"\n{mapping.replace("TEMPLATE", work + "/t.tmpl")}')
        os.sync()
        started = time.perf_counter()
        subprocess.run([binary, "sync", "-c", config, "--log-level", "error"], check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.sync()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--etcsync", required=True, action="append",
                    help="the binary; given more than once, each binary's cases alternate (before/after a change)")
    ap.add_argument("--only", help="run only the cases whose name contains this (e.g. 'in place')")
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    etcd, endpoint, data = start_etcd(a.etcd, "--quota-backend-bytes", str(8 << 30))
    try:
        for first in range(0, a.keys, 128):
            ops = [{"requestPut": {"key": b64(f"/t/k{i:07d}"), "value": b64(f"v{i:07d}".ljust(100, "x"))}}
                   for i in range(first, min(first + 128, a.keys))]
            request = urllib.request.Request(endpoint + "/v3/kv/txn", data=json.dumps({"success": ops}).encode(), method="POST")
            urllib.request.urlopen(request).read()
        cases = [
            ("floor: create + write + close", lambda: floor(a.dir, a.keys, rename=False)),
            ("floor: the same + rename each", lambda: floor(a.dir, a.keys, rename=True)),
        ]
        names = [os.path.basename(binary) for binary in a.etcsync]
        for index, binary in enumerate(a.etcsync):
            label = ""
            if len(a.etcsync) > 1:  # the basename, or the position when two basenames are the same
                label = f" ({names[index]})" if names.count(names[index]) == 1 else f" (binary {index + 1})"
            cases += [
                (f"etcsync sync, tree in place{label}",
                 lambda b=binary: etcsync(b, a.dir, endpoint, "    kind: tree\n    swap: in-place\n")),
                (f"etcsync sync, tree swapped{label}", lambda b=binary: etcsync(b, a.dir, endpoint, "    kind: tree\n")),
                (f"etcsync sync, template (one file){label}",
                 lambda b=binary: etcsync(b, a.dir, endpoint, '    template: "TEMPLATE"\n')),
            ]
        if a.only:
            cases = [case for case in cases if a.only in case[0]]
        times = {name: [] for name, _ in cases}
        for number in range(a.runs):
            # A B, B A, A B…: neither case always runs after the other (each removes what it made).
            for name, run in (cases if number % 2 == 0 else list(reversed(cases))):
                times[name].append(run())
        fs = subprocess.run(["stat", "-f", "-c", "%T", a.dir], capture_output=True, text=True).stdout.strip()
        print(f"{a.keys} keys under {a.dir} ({fs}), {a.runs} runs each, in alternating order; median (min-max) seconds")
        print("| case | s |")
        print("|---|---|")
        for name, _ in cases:
            values = times[name]
            print(f"| {name} | {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}) |")
    finally:
        etcd.terminate()
        etcd.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
