#!/usr/bin/env python3
"""A burst of puts into a tree mapping, counted the way issue 15 states its target ("a
5,000-put burst in at most 100 swaps with the final state on disk within 10 ms of the last
reply"; docs/benchmarks.md, "A tree's burst counted in swaps").

A throwaway etcd (data on /dev/shm) holds KEYS keys of 100 bytes. For each binary and each
`swap` given, one after the other: `etcsync run` with one tree mapping over them, its
destination under --dir (the VM's ext4 by default, like mirror_bench.py's output); once the
daemon is idle, PUTS puts on the KEYS keys from CLIENTS connections (round-major, as
mirror_bench.py's burst phase) through etcd's JSON gateway. inotify on the tree's root counts
what readers see change:

- `swap: symlink`: the publishes, each a rename over `..data` (one swap of the whole tree);
- `swap: in-place`: the files renamed into place (one per changed key per batch).

After the burst the output must be quiet for a second and the agent idle; then every file is
compared byte for byte with etcd's values at the end (the oracle; a mismatch, a leftover temp file
or lost inotify events fail the run), and "the last visible" is the time from the last put's reply
to the last such event (mirror_bench.py's "converged after the last ack"; the sync that makes the
last renames durable comes after it).

Usage: tree_burst.py [--keys 500] [--puts 5000] [--clients 8] [--dir /tmp] [--swap symlink,in-place]
                     [--repeat 1] [--perf DIR] ETCSYNC_BIN [ETCSYNC_BIN…]
"""
import argparse
import base64
import ctypes
import http.client
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_etcd import b64, start_etcd, stop  # noqa: E402
from rss_rollup import seed  # noqa: E402
from tree_apply_cost import cpu_seconds  # noqa: E402

IN_MOVED_TO = 0x80
IN_Q_OVERFLOW = 0x4000


class RootEvents:
    """inotify on one directory: the time of every entry renamed into it, by name."""

    def __init__(self, directory):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(directory), IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify")
        self.events = []  # (monotonic time, name bytes)
        self.overflowed = False
        self.lock = threading.Lock()
        self.stopping = os.pipe()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            ready, _, _ = select.select([self.fd, self.stopping[0]], [], [])
            if self.stopping[0] in ready:
                return
            now = time.monotonic()
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16:offset + 16 + length].rstrip(b"\0")
                offset += 16 + length
                with self.lock:
                    if mask & IN_Q_OVERFLOW:
                        self.overflowed = True
                    else:
                        self.events.append((now, name))

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def close(self):
        os.write(self.stopping[1], b"x")
        self.thread.join()
        for fd in (self.fd, *self.stopping):
            os.close(fd)


class Gateway:
    """One persistent connection to etcd's JSON gateway."""

    def __init__(self, endpoint):
        host, port = endpoint.split("//", 1)[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, path, body):
        self.conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"etcd {path}: HTTP {response.status}: {data[:200]!r}")
        return json.loads(data)

    def values(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        reply = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)})
        return {base64.b64decode(kv["key"]).decode()[len(prefix):]: base64.b64decode(kv.get("value", ""))
                for kv in reply.get("kvs", [])}


def wait_idle(pid):
    """Until the daemon spent under 10 ms of CPU in half a second (its start-up drift check done)."""
    for _ in range(600):
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < 0.01:
            return
    raise RuntimeError("the agent was still busy after 300 s")


def burst(binary, swap, args, endpoint, prefix, round_number):
    work = tempfile.mkdtemp(prefix="tree-burst-", dir=args.dir)
    agent = None
    try:
        root = f"{work}/out"
        with open(f"{work}/c.yaml", "w") as f:
            f.write(f'etcd:\n  endpoints: ["{endpoint}"]\nstate:\n  dir: "{work}/state"\nmappings:\n  - name: t\n'
                    f'    kind: tree\n    swap: {swap}\n    prefix: {prefix}\n    dest: "{root}"\n')
        agent = subprocess.Popen([binary, "run", "-c", f"{work}/c.yaml", "--log-level", "error"])
        deadline = time.monotonic() + 120
        while not os.path.exists(f"{work}/state/state.json"):
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{binary} did not sync (exit {agent.poll()})")
            time.sleep(0.05)
        wait_idle(agent.pid)
        events = RootEvents(root)
        lanes = [[] for _ in range(args.clients)]
        for j in range(args.puts):
            index = j % args.keys
            lanes[index % args.clients].append((index, f"r{round_number}-{j}".ljust(100, "y")))
        acks = []
        errors = []

        def lane(items):
            try:
                gateway = Gateway(endpoint)
                for index, value in items:
                    gateway.call("/v3/kv/put", {"key": b64(f"{prefix}k{index:07d}"), "value": b64(value)})
                    acks.append(time.monotonic())
            except Exception as error:  # reported below, the run fails
                errors.append(repr(error))

        profiler = None
        if args.perf:
            profiler = subprocess.Popen(["perf", "record", "-q", "-F", "2000", "-g", "-p", str(agent.pid), "-o",
                                         f"{args.perf}/{os.path.basename(binary)}-{swap}-{round_number}.data"])
            time.sleep(0.5)
        cpu_before = cpu_seconds(agent.pid)
        started = time.monotonic()
        threads = [threading.Thread(target=lane, args=(items,)) for items in lanes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"puts failed: {errors[:3]}")
        last_ack = max(acks)
        while True:  # quiet for a second after the last ack and the last event
            seen = events.snapshot()
            last = max([last_ack] + [t for t, _ in seen])
            if time.monotonic() - last >= 1.0:
                break
            time.sleep(0.1)
        wait_idle(agent.pid)  # a slow last sync or hold: the oracle looks once the agent is idle
        seen = events.snapshot()
        cpu = cpu_seconds(agent.pid) - cpu_before
        if profiler:
            profiler.send_signal(2)
            profiler.wait()
        events.close()
        if agent.poll() is not None:
            raise RuntimeError(f"{binary} exited ({agent.returncode})")
        wanted = Gateway(endpoint).values(prefix)
        wrong = []
        for name, value in wanted.items():
            try:
                with open(os.path.join(root, name), "rb") as f:
                    if f.read() != value:
                        wrong.append(name)
            except OSError:
                wrong.append(name)
        names = set(os.listdir(root))
        extra = sorted(name for name in names - set(wanted) if not name.startswith(".."))
        extra += sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files if "etcsync-tmp" in f)
        if swap == "symlink":
            commits = [t for t, name in seen if name == b"..data"]
        else:
            commits = [t for t, name in seen if not name.startswith(b".")]
        after = (commits[-1] - last_ack) * 1000 if commits else float("nan")
        status = "ok" if not wrong and not extra else f"WRONG: {len(wrong)} files differ from etcd, {len(extra)} extra ({extra[:3]})"
        if events.overflowed:
            status += "; LOST inotify events (queue overflow): the counts are low"
        print(f"{os.path.basename(binary)} swap={swap}: {len(acks)} puts in {last_ack - started:.2f} s; "
              f"{'swaps' if swap == 'symlink' else 'files renamed in'} {len(commits)}; the last visible {after:.1f} ms after the "
              f"last reply; agent CPU {cpu:.2f} s; {status}", flush=True)
        return not wrong and not extra and not events.overflowed
    finally:
        stop([agent], [work])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--puts", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--swap", default="symlink,in-place")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--perf", metavar="DIR", help="record each burst with `perf record -g` into DIR")
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)  # the inotify reader thread is not kept waiting behind the put threads
    fs = subprocess.run(["stat", "-f", "-c", "%T", args.dir], capture_output=True, text=True).stdout.strip()
    print(f"{args.keys} keys, {args.puts} puts from {args.clients} connections, trees under {args.dir} ({fs})", flush=True)
    etcd, endpoint, data = start_etcd("/usr/bin/etcd")
    ok = True
    try:
        seed(endpoint, "/b/", args.keys)
        round_number = 0
        for _ in range(args.repeat):
            for binary in args.binaries:
                for swap in args.swap.split(","):
                    round_number += 1
                    ok = burst(os.path.realpath(binary), swap, args, endpoint, "/b/", round_number) and ok
    finally:
        stop([etcd], [data])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
