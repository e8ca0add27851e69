#!/usr/bin/env python3
"""The fleet benchmark (issue 13 §3): N etcsync agents on one etcd, direct and through etcd's
gRPC proxy, on this machine.

For every N (--agents, default 1,50,200) and every mode (--modes, default direct,proxy) it
starts a fresh etcd (data dir on /dev/shm, free loopback ports) and, in proxy mode, one
`etcd grpc-proxy start` in front of it; then N `etcsync run` processes, each with its own
state directory and presence name (presence TTL --ttl), all mapping the same prefix as a tree
(one file). Agents start in waves (--wave) and must all hold the initial value before the
change phase.

Change phase: --changes puts (each to etcd itself, through its JSON gateway on one kept-alive
HTTP connection, on a thread), one at a time: while the put is under way and after it, the
benchmark waits on one inotify descriptor watching every agent's destination directory
(IN_MOVED_TO|IN_CLOSE_WRITE|IN_CREATE) until every agent's file holds the new value, reading
the file on each event, then pauses about --gap. For each change it records the time from the
put's reply to the first agent, the median agent and the last agent holding the value (an
agent that held it before the reply came counts 0), and the same from the moment the request
was sent (an upper bound that includes the put itself), and reports p50/p99 over the changes.
A few warm-up changes come first and are not counted.

Around the change phase it samples: etcd's (and the proxy's) CPU seconds (/proc/PID/stat) and
RSS (/proc/PID/status), the agents' total RSS and CPU, etcd's /metrics (watchers, watch
streams, open gRPC streams, keep-alive messages, lease renewals, bytes sent to clients, open
fds), the lease count (LeaseLeases through the gateway). After it, the wall time of
`etcsync status --min-agents N --wait-revision R` (R: the last put's revision; --status-runs
times) and of a plain `etcsync status --json`, both on the endpoint the agents use.

Prints one table (a column per configuration) and writes every figure, with the raw
per-change latencies, to --json-out.

--synthetic-presence K instead times `etcsync status` (a plain listing and a --wait-revision
that every record already satisfies) over K synthetic presence keys, each on a lease of its own, with no
agent running, and counts the LeaseTimeToLive calls etcd served meanwhile.

Usage: fleet_bench.py --etcsync BIN [--agents 1,50,200] [--modes direct,proxy] [--changes 100]
                      [--changes-at 200=50] [--ttl 30] [--wave 25] [--json-out FILE]
"""
import argparse
import base64
import ctypes
import ctypes.util
import http.client
import json
import os
import platform
import random
import resource
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PREFIX = "/fleet/config/"
KEY = PREFIX + "value"
FILE = "value"
PRESENCE = "/fleet/agents"

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
EVENT = struct.Struct("iIII")

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*parts):
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


# --- /proc --------------------------------------------------------------------------------


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def pss_kib(pid):
    """Proportional set size (/proc/PID/smaps_rollup): shared pages, such as the binary's text,
    divided among the processes that map them, so a sum over processes is their real footprint."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


# --- inotify ------------------------------------------------------------------------------


class Inotify:
    """One inotify descriptor (ctypes), one watch per agent's destination directory."""

    def __init__(self):
        self.libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1: " + os.strerror(ctypes.get_errno()))
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self.owner = {}

    def watch(self, directory, index):
        wd = self.libc.inotify_add_watch(self.fd, directory.encode(), IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}: " + os.strerror(ctypes.get_errno()))
        self.owner[wd] = index

    def read(self, timeout):
        """Agents whose directory saw an event named FILE within `timeout` seconds ({} on timeout;
        None: the queue overflowed, check every agent)."""
        if not self.poller.poll(max(0, int(timeout * 1000))):
            return set()
        touched = set()
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return touched
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = EVENT.unpack_from(data, offset)
                name = data[offset + EVENT.size: offset + EVENT.size + length].rstrip(b"\0")
                offset += EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    return None
                if name == FILE.encode() and wd in self.owner:
                    touched.add(self.owner[wd])

    def close(self):
        os.close(self.fd)


# --- etcd ---------------------------------------------------------------------------------


class Gateway:
    """etcd's JSON gateway on one kept-alive HTTP connection."""

    def __init__(self, port):
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, path, body):
        for attempt in range(2):
            try:
                self.connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
                response = self.connection.getresponse()
                data = response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status}: {data[:200]!r}")
                return json.loads(data)
            except (http.client.HTTPException, ConnectionError):
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    raise

    def put(self, key, value):
        return int(self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})["header"]["revision"])

    def lease_count(self):
        return len(self.call("/v3/lease/leases", {}).get("leases", []))


def scrape(port):
    """Prometheus text from 127.0.0.1:port/metrics as {name{labels}: value}."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            pass
    return values


def metric(values, name, **labels):
    """Sum of every series of `name` whose labels include `labels`."""
    total = 0.0
    for series, value in values.items():
        base, _, rest = series.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def open_streams(values, method):
    return metric(values, "grpc_server_started_total", grpc_method=method) - metric(values, "grpc_server_handled_total", grpc_method=method)


class Etcd:
    def __init__(self, binary, root):
        self.client, self.peer = free_ports(2)
        self.data = os.path.join(root, "etcd-data")
        self.logfile = os.path.join(root, "etcd.log")
        with open(self.logfile, "wb") as out:
            self.process = subprocess.Popen([
                binary, "--name", "fleet", "--data-dir", self.data,
                "--listen-client-urls", f"http://127.0.0.1:{self.client}", "--advertise-client-urls", f"http://127.0.0.1:{self.client}",
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer}",
                "--initial-cluster", f"fleet=http://127.0.0.1:{self.peer}",
            ], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_healthy(self.process, self.client, "etcd", self.logfile)
        self.pid = self.process.pid

    def stop(self):
        stop_process(self.process)


class Proxy:
    def __init__(self, binary, root, backend_port):
        (self.port,) = free_ports(1)
        self.logfile = os.path.join(root, "grpc-proxy.log")
        with open(self.logfile, "wb") as out:
            self.process = subprocess.Popen([
                binary, "grpc-proxy", "start", "--endpoints", f"127.0.0.1:{backend_port}",
                "--listen-addr", f"127.0.0.1:{self.port}", "--advertise-client-url", f"127.0.0.1:{self.port}",
            ], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        # The proxy has no JSON gateway; its /health reads through to etcd.
        wait_healthy(self.process, self.port, "grpc-proxy", self.logfile)
        self.pid = self.process.pid

    def stop(self):
        stop_process(self.process)


def wait_healthy(process, port, what, logfile, limit=30):
    """Waits until /health on `port` says true (at most `limit` seconds, or until `process` exits)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            if b"true" in urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read():
                return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start; see {logfile}")
        time.sleep(0.1)


def stop_process(process, grace=10):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- agents -------------------------------------------------------------------------------

CONFIG = """etcd:
  endpoints: ["{endpoint}"]
  watch: {watch}
state:
  dir: "{dir}/state"
presence: {{prefix: {presence}, name: {name}, ttl: {ttl}s}}
log: {{level: warning}}
mappings:
  - name: fleet
    kind: tree
    prefix: "{prefix}"
    dest: "{dir}/out"
    swap: in-place
    repairDrift: false
{second}"""

# With --second-prefix: a second tree mapping that no change touches, so that each change of
# the first waits, with `watch: ranges`, for one read of the second range (issue 13 §2's cost).
SECOND = """  - name: second
    kind: tree
    prefix: "{prefix}"
    dest: "{dir}/second"
    swap: in-place
    repairDrift: false
"""


class Fleet:
    """N agent processes in one process group."""

    def __init__(self, binary, root, endpoint, ttl, watch="ranges", second_prefix=""):
        self.watch = watch
        self.second_prefix = second_prefix
        self.binary = binary
        self.root = root
        self.endpoint = endpoint
        self.ttl = ttl
        self.processes = []
        self.dirs = []
        self.group = None

    def start(self, index):
        directory = os.path.join(self.root, f"agent-{index:05d}")
        os.makedirs(os.path.join(directory, "out"))
        config = os.path.join(directory, "etcsync.yaml")
        with open(config, "w") as f:
            second = SECOND.format(prefix=self.second_prefix, dir=directory) if self.second_prefix else ""
            f.write(CONFIG.format(endpoint=self.endpoint, dir=directory, presence=PRESENCE, name=f"agent-{index:05d}",
                                  ttl=self.ttl, prefix=PREFIX, watch=self.watch, second=second))
        with open(os.path.join(directory, "agent.log"), "wb") as out:
            process = subprocess.Popen([self.binary, "run", "-c", config], stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, process_group=self.group or 0)
        if self.group is None:
            self.group = process.pid
        self.processes.append(process)
        self.dirs.append(directory)
        return directory

    def dead(self):
        return [(i, p.returncode) for i, p in enumerate(self.processes) if p.poll() is not None]

    def pids(self):
        return [p.pid for p in self.processes]

    def stop(self):
        if self.group is not None:
            try:
                os.killpg(self.group, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.processes:  # the group's leader may be gone while others live
            if p.poll() is None:
                try:
                    p.terminate()
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for p in self.processes:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.group is not None:
            try:
                os.killpg(self.group, signal.SIGKILL)
            except ProcessLookupError:
                pass


def holds(directory, value):
    try:
        with open(os.path.join(directory, "out", FILE), "rb") as f:
            return f.read() == value
    except FileNotFoundError:
        return False


def wait_all(dirs, value, timeout):
    """Polls until every agent's file holds value; the indices still missing at the timeout."""
    deadline = time.monotonic() + timeout
    missing = set(range(len(dirs)))
    while missing and time.monotonic() < deadline:
        missing = {i for i in missing if not holds(dirs[i], value)}
        if missing:
            time.sleep(0.1)
    return missing


def percentile(values, p):
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


def timed_status(binary, endpoint, args):
    t0 = time.monotonic()
    result = subprocess.run([binary, "status", "--endpoints", endpoint, "--prefix", PRESENCE] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120)
    return time.monotonic() - t0, result


# --- one configuration --------------------------------------------------------------------


def run_configuration(args, n, mode, changes):
    root = tempfile.mkdtemp(prefix=f"fleet-bench-{mode}-{n}-", dir=args.tmp)
    etcd = proxy = fleet = notifier = None
    result = {"agents": n, "mode": mode, "changes": changes, "load_before": os.getloadavg()}
    try:
        etcd = Etcd(args.etcd, root)
        gateway = Gateway(etcd.client)
        initial = f"initial-{random.getrandbits(32):08x}".encode()
        gateway.put(KEY, initial)
        if mode == "proxy":
            proxy = Proxy(args.etcd, root, etcd.client)
            endpoint = f"http://127.0.0.1:{proxy.port}"
        else:
            endpoint = f"http://127.0.0.1:{etcd.client}"
        result["etcd_rss_idle_kib"] = rss_kib(etcd.pid)
        if args.second_prefix:
            gateway.put(args.second_prefix.encode() + b"k", b"second")
        fleet = Fleet(args.etcsync, root, endpoint, args.ttl, args.watch, args.second_prefix)
        notifier = Inotify()
        t_start = time.monotonic()
        for first in range(0, n, args.wave):
            wave = []
            for i in range(first, min(n, first + args.wave)):
                wave.append(fleet.start(i))
                notifier.watch(os.path.join(fleet.dirs[i], "out"), i)
            missing = wait_all(wave, initial, args.start_timeout)
            if missing or fleet.dead():
                raise RuntimeError(f"agents not ready: missing {sorted(first + i for i in missing)[:10]}, exited {fleet.dead()[:10]}; "
                                   f"see {root}/agent-*/agent.log")
            log(f"{mode} N={n}: {min(n, first + args.wave)} agents hold the initial value")
        result["start_seconds"] = time.monotonic() - t_start
        # Presence registered too: every agent current through the initial value's revision.
        rev = int(json.loads(urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{etcd.client}/v3/kv/range", data=json.dumps({"key": b64(KEY)}).encode(), method="POST")).read())["header"]["revision"])
        wall, status = timed_status(args.etcsync, endpoint, ["--wait-revision", str(rev), "--min-agents", str(n), "--timeout", "120s"])
        if status.returncode != 0:
            raise RuntimeError(f"status --min-agents {n} after start: exit {status.returncode}: {status.stderr.decode()[-500:]}")
        result["status_after_start_seconds"] = wall

        def change(value):
            """Puts value (on a thread) and times every agent's file holding it: returns the
            put's revision, each agent's time from the put's reply (0 if before it) and from
            the moment the request was sent."""
            outcome = {}

            def put():
                try:
                    outcome["revision"] = gateway.put(KEY, value)
                except Exception as e:  # noqa: BLE001 - re-raised below
                    outcome["error"] = e
                outcome["reply"] = time.monotonic()

            sent = time.monotonic()
            thread = threading.Thread(target=put)
            thread.start()
            seen = {}
            deadline = sent + args.change_timeout
            while len(seen) < n or thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                touched = notifier.read(min(left, 0.02) if thread.is_alive() else left)
                now = time.monotonic()
                if touched is None:
                    touched = set(range(n))
                for i in touched:
                    if i not in seen and holds(fleet.dirs[i], value):
                        seen[i] = now
            thread.join()
            if "error" in outcome:
                raise outcome["error"]
            reply = outcome["reply"]
            rtts.append(reply - sent)
            return (outcome["revision"], {i: max(0.0, t - reply) for i, t in seen.items()},
                    {i: t - sent for i, t in seen.items()})

        rtts = []
        for w in range(args.warmup):
            change(f"warmup-{w}-{random.getrandbits(32):08x}".encode())
        settle = 0.2
        time.sleep(settle)

        pids = fleet.pids()
        before = {
            "t": time.monotonic(), "etcd_cpu": cpu_seconds(etcd.pid), "metrics": scrape(etcd.client),
            "agents_cpu": sum(cpu_seconds(p) for p in pids), "proxy_cpu": cpu_seconds(proxy.pid) if proxy else 0.0,
            "proxy_metrics": scrape(proxy.port) if proxy else {},
        }
        rtts.clear()
        first_l, median_l, last_l, incomplete = [], [], [], 0
        last_send_l, median_send_l = [], []
        last_revision = None
        for c in range(changes):
            value = f"change-{c}-{random.getrandbits(48):012x}".encode()
            last_revision, times, from_send = change(value)
            if len(times) < n:
                incomplete += 1
                log(f"change {c}: only {len(times)}/{n} agents within {args.change_timeout}s")
                continue
            ordered = sorted(times.values())
            first_l.append(ordered[0])
            median_l.append(ordered[(n - 1) // 2])
            last_l.append(ordered[-1])
            last_send_l.append(max(from_send.values()))
            median_send_l.append(sorted(from_send.values())[(n - 1) // 2])
            time.sleep(args.gap * (0.5 + random.random()))
        after = {
            "t": time.monotonic(), "etcd_cpu": cpu_seconds(etcd.pid), "metrics": scrape(etcd.client),
            "agents_cpu": sum(cpu_seconds(p) for p in pids), "proxy_cpu": cpu_seconds(proxy.pid) if proxy else 0.0,
            "proxy_metrics": scrape(proxy.port) if proxy else {},
        }
        phase = after["t"] - before["t"]
        mb, ma = before["metrics"], after["metrics"]

        def diff(name, **labels):
            return metric(ma, name, **labels) - metric(mb, name, **labels)

        keepalive_msgs = diff("grpc_server_msg_received_total", grpc_method="LeaseKeepAlive")
        result.update({
            "measured_changes": len(last_l),
            "incomplete_changes": incomplete,
            "phase_seconds": phase,
            "latency_ms": {
                "first": {"p50": ms(percentile(first_l, 50)), "p99": ms(percentile(first_l, 99))},
                "median_agent": {"p50": ms(percentile(median_l, 50)), "p99": ms(percentile(median_l, 99))},
                "last_from_send": {"p50": ms(percentile(last_send_l, 50)), "p99": ms(percentile(last_send_l, 99))},
                "median_agent_from_send": {"p50": ms(percentile(median_send_l, 50)), "p99": ms(percentile(median_send_l, 99))},
                "last": {"p50": ms(percentile(last_l, 50)), "p99": ms(percentile(last_l, 99)), "max": ms(max(last_l) if last_l else None),
                         "mean": ms(statistics.mean(last_l) if last_l else None)},
            },
            "put_rtt_ms": {"p50": ms(percentile(rtts, 50)), "p99": ms(percentile(rtts, 99))},
            "zero_first": sum(1 for x in first_l if x == 0),
            "raw_last_ms": [round(x * 1000, 3) for x in last_l],
            "raw_first_ms": [round(x * 1000, 3) for x in first_l],
            "raw_last_from_send_ms": [round(x * 1000, 3) for x in last_send_l],
            "etcd_cpu_seconds": after["etcd_cpu"] - before["etcd_cpu"],
            "etcd_rss_kib": rss_kib(etcd.pid),
            "etcd_rss_peak_kib": rss_kib(etcd.pid, "VmHWM"),
            "agents_cpu_seconds": after["agents_cpu"] - before["agents_cpu"],
            "agents_rss_kib": sum(rss_kib(p) for p in pids),
            "agents_pss_kib": sum(pss_kib(p) for p in pids),
            "agents_rss_anon_kib": sum(rss_kib(p, "RssAnon") for p in pids),
            "proxy_cpu_seconds": (after["proxy_cpu"] - before["proxy_cpu"]) if proxy else None,
            "proxy_rss_kib": rss_kib(proxy.pid) if proxy else None,
            "etcd_watchers": metric(ma, "etcd_debugging_mvcc_watcher_total"),
            "etcd_watch_streams": metric(ma, "etcd_debugging_mvcc_watch_stream_total"),
            "etcd_open_grpc_watch_streams": open_streams(ma, "Watch"),
            "etcd_open_grpc_keepalive_streams": open_streams(ma, "LeaseKeepAlive"),
            "etcd_open_fds": metric(ma, "process_open_fds"),
            "etcd_goroutines": metric(ma, "go_goroutines"),
            "etcd_leases": gateway.lease_count(),
            "keepalive_msgs_per_second": keepalive_msgs / phase if phase else None,
            "lease_renewals_per_second": diff("etcd_debugging_lease_renewed_total") / phase if phase else None,
            "etcd_grpc_sent_bytes_per_change": diff("etcd_network_client_grpc_sent_bytes_total") / max(1, changes),
            "etcd_grpc_received_bytes_per_change": diff("etcd_network_client_grpc_received_bytes_total") / max(1, changes),
            "etcd_puts_txns_per_change": (diff("grpc_server_handled_total", grpc_method="Put")
                                          + diff("grpc_server_handled_total", grpc_method="Txn")) / max(1, changes),
            "etcd_ranges_per_change": diff("grpc_server_handled_total", grpc_method="Range") / max(1, changes),
            "watch_msgs_sent_per_change": diff("grpc_server_msg_sent_total", grpc_method="Watch") / max(1, changes),
        })
        if proxy:
            pm = after["proxy_metrics"]
            result["proxy_watchers_coalescing"] = metric(pm, "etcd_grpc_proxy_watchers_coalescing_total")
            result["proxy_events_coalescing_per_change"] = (metric(pm, "etcd_grpc_proxy_events_coalescing_total")
                                                            - metric(before["proxy_metrics"], "etcd_grpc_proxy_events_coalescing_total")) / max(1, changes)
        # status, on the endpoint the agents use.
        status_before = scrape(etcd.client)
        waits = []
        for _ in range(args.status_runs):
            wall, status = timed_status(args.etcsync, endpoint, ["--wait-revision", str(last_revision), "--min-agents", str(n), "--timeout", "60s"])
            waits.append(wall if status.returncode == 0 else None)
            if status.returncode != 0:
                log(f"status --wait-revision: exit {status.returncode}: {status.stderr.decode()[-300:]}")
            time.sleep(1.1)  # an agent answers a request at most once a second
        result["status_wait_seconds"] = waits
        status_after = scrape(etcd.client)
        result["status_wait_ttl_calls_at_etcd"] = (metric(status_after, "grpc_server_handled_total", grpc_method="LeaseTimeToLive")
                                                   - metric(status_before, "grpc_server_handled_total", grpc_method="LeaseTimeToLive")) / max(1, args.status_runs)
        wall, status = timed_status(args.etcsync, endpoint, ["--json"])
        result["status_list_seconds"] = wall
        try:
            listed = json.loads(status.stdout)
            result["status_listed_agents"] = len(listed.get("agents", listed) if isinstance(listed, dict) else listed)
        except (ValueError, TypeError):
            result["status_listed_agents"] = None
        result["dead_agents"] = fleet.dead()
        result["load_after"] = os.getloadavg()
        return result
    finally:
        if notifier:
            notifier.close()
        if fleet:
            fleet.stop()
        if proxy:
            proxy.stop()
        if etcd:
            etcd.stop()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 2)


def synthetic_presence(args, count):
    """`etcsync status` over `count` synthetic presence keys (no agent processes): records that
    are current through a revision far ahead, each bound to a lease of its own (as every agent
    holds its own), put in transactions of 128.
    Times a plain `status --json` and `status --wait-revision 2 --min-agents count`."""
    root = tempfile.mkdtemp(prefix="fleet-bench-presence-", dir=args.tmp)
    etcd = None
    try:
        etcd = Etcd(args.etcd, root)
        gateway = Gateway(etcd.client)
        leases = [gateway.call("/v3/lease/grant", {"TTL": 3600})["ID"] for _ in range(count)]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for first in range(0, count, 128):
            ops = []
            for i in range(first, min(count, first + 128)):
                record = {"name": f"synthetic-{i:05d}", "host": f"host-{i:05d}", "pid": 1000 + i, "version": "0.1.0",
                          "startedAt": stamp, "mappings": ["fleet"], "appliedRevision": 1 << 40,
                          "currentRevision": 1 << 40, "updatedAt": stamp, "ready": True}
                ops.append({"requestPut": {"key": b64(f"{PRESENCE}/synthetic-{i:05d}"),
                                           "value": b64(json.dumps(record, separators=(",", ":"), sort_keys=True)), "lease": leases[i]}})
            gateway.call("/v3/kv/txn", {"success": ops})
        endpoint = f"http://127.0.0.1:{etcd.client}"
        before = scrape(etcd.client)
        wall_list, listed = timed_status(args.etcsync, endpoint, ["--json"])
        mid = scrape(etcd.client)
        wall_wait, waited = timed_status(args.etcsync, endpoint, ["--wait-revision", "2", "--min-agents", str(count), "--timeout", "120s"])
        after = scrape(etcd.client)
        try:
            parsed = json.loads(listed.stdout)
            shown = len(parsed.get("agents", parsed) if isinstance(parsed, dict) else parsed)
        except (ValueError, TypeError):
            shown = None
        return {
            "keys": count, "status_list_seconds": wall_list, "status_list_exit": listed.returncode, "status_list_agents": shown,
            "status_list_ttl_calls": metric(mid, "grpc_server_handled_total", grpc_method="LeaseTimeToLive")
            - metric(before, "grpc_server_handled_total", grpc_method="LeaseTimeToLive"),
            "status_wait_seconds": wall_wait, "status_wait_exit": waited.returncode,
            "status_wait_ttl_calls": metric(after, "grpc_server_handled_total", grpc_method="LeaseTimeToLive")
            - metric(mid, "grpc_server_handled_total", grpc_method="LeaseTimeToLive"),
            "stderr": (listed.stderr + waited.stderr).decode()[-500:],
        }
    finally:
        if etcd:
            etcd.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- report -------------------------------------------------------------------------------


def table(results, binary_note):
    columns = [f"N={r['agents']} {r['mode']}" for r in results]

    def mib(kib):
        return "–" if kib is None else f"{kib / 1024:.0f} MiB"

    def num(x, fmt="{:.0f}"):
        return "–" if x is None else fmt.format(x)

    def secs(values):
        ok = [v for v in values if v is not None]
        if not ok:
            return "failed"
        text = f"{statistics.median(ok):.2f} s (max {max(ok):.2f})"
        return text + (f", {len(values) - len(ok)} failed" if len(ok) < len(values) else "")

    rows = [
        ("changes measured", lambda r: f"{r['measured_changes']}" + (f" ({r['incomplete_changes']} incomplete)" if r["incomplete_changes"] else "")),
        ("last agent p50", lambda r: num(r["latency_ms"]["last"]["p50"], "{:.1f} ms")),
        ("last agent p99", lambda r: num(r["latency_ms"]["last"]["p99"], "{:.1f} ms")),
        ("last agent p50 / p99 from the put's request", lambda r: num(r["latency_ms"]["last_from_send"]["p50"], "{:.1f}") + " / " + num(r["latency_ms"]["last_from_send"]["p99"], "{:.1f} ms")),
        ("median agent p50 from the put's request", lambda r: num(r["latency_ms"]["median_agent_from_send"]["p50"], "{:.1f} ms")),
        ("put round trip p50 (gateway)", lambda r: num(r["put_rtt_ms"]["p50"], "{:.1f} ms")),
        ("median agent p50", lambda r: num(r["latency_ms"]["median_agent"]["p50"], "{:.1f} ms")),
        ("first agent p50", lambda r: num(r["latency_ms"]["first"]["p50"], "{:.1f} ms")),
        ("etcd CPU in the phase", lambda r: f"{r['etcd_cpu_seconds']:.2f} s / {r['phase_seconds']:.0f} s"),
        ("etcd RSS (peak)", lambda r: f"{mib(r['etcd_rss_kib'])} ({mib(r['etcd_rss_peak_kib'])})"),
        ("proxy CPU / RSS", lambda r: "–" if r["proxy_rss_kib"] is None else f"{r['proxy_cpu_seconds']:.2f} s / {mib(r['proxy_rss_kib'])}"),
        ("agents' RSS, total", lambda r: mib(r["agents_rss_kib"])),
        ("agents' PSS, total (anonymous RSS)", lambda r: f"{mib(r['agents_pss_kib'])} ({mib(r['agents_rss_anon_kib'])})"),
        ("agents' CPU in the phase", lambda r: f"{r['agents_cpu_seconds']:.2f} s"),
        ("etcd watchers", lambda r: num(r["etcd_watchers"])),
        ("etcd watch streams", lambda r: num(r["etcd_watch_streams"])),
        ("etcd open LeaseKeepAlive streams", lambda r: num(r["etcd_open_grpc_keepalive_streams"])),
        ("etcd open fds", lambda r: num(r["etcd_open_fds"])),
        ("etcd leases", lambda r: num(r["etcd_leases"])),
        ("keep-alive msgs/s at etcd", lambda r: num(r["keepalive_msgs_per_second"], "{:.2f}")),
        ("lease renewals/s", lambda r: num(r["lease_renewals_per_second"], "{:.2f}")),
        ("etcd gRPC bytes sent per change", lambda r: num(r["etcd_grpc_sent_bytes_per_change"])),
        ("etcd Put+Txn per change (incl. the benchmark's put)", lambda r: num(r["etcd_puts_txns_per_change"], "{:.1f}")),
        ("etcd gRPC bytes received per change", lambda r: num(r["etcd_grpc_received_bytes_per_change"])),
        ("Watch msgs sent per change", lambda r: num(r["watch_msgs_sent_per_change"], "{:.1f}")),
        ("status --wait-revision --min-agents N", lambda r: secs(r["status_wait_seconds"])),
        ("status (list)", lambda r: f"{r['status_list_seconds']:.2f} s"),
        ("agents started in", lambda r: f"{r['start_seconds']:.1f} s"),
        ("load average before → after", lambda r: f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f}"),
    ]
    lines = [f"binary: {binary_note}", "", "| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for label, render in rows:
        cells = []
        for r in results:
            if "error" in r:
                cells.append("error")
                continue
            try:
                cells.append(render(r))
            except (KeyError, TypeError):
                cells.append("–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    errors = [f"N={r['agents']} {r['mode']}: {r['error']}" for r in results if "error" in r]
    return "\n".join(lines + ([""] + errors if errors else []))


def interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")  # the finally blocks stop every process


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--etcsync", required=True, help="the etcsync binary")
    ap.add_argument("--binary-note", default=None, help="how the binary was built, for the table")
    ap.add_argument("--etcd", default="/usr/bin/etcd", help="the etcd binary (also runs the gRPC proxy)")
    ap.add_argument("--agents", default="1,50,200", help="agent counts, comma-separated")
    ap.add_argument("--modes", default="direct,proxy", help="direct and/or proxy, comma-separated")
    ap.add_argument("--changes", type=int, default=100, help="measured changes per configuration")
    ap.add_argument("--changes-at", default="", help="per-N change counts, e.g. 200=50")
    ap.add_argument("--warmup", type=int, default=5, help="changes made first and not counted")
    ap.add_argument("--gap", type=float, default=0.05, help="mean pause between changes, seconds (0.5×–1.5×)")
    ap.add_argument("--ttl", type=int, default=30, help="presence TTL, seconds")
    ap.add_argument("--wave", type=int, default=25, help="agents started at a time")
    ap.add_argument("--start-timeout", type=float, default=180, help="seconds a wave of agents may take to sync")
    ap.add_argument("--change-timeout", type=float, default=30, help="seconds a change may take to reach every agent")
    ap.add_argument("--status-runs", type=int, default=3, help="timed `status --wait-revision` runs")
    ap.add_argument("--tmp", default="/dev/shm" if os.path.isdir("/dev/shm") else None, help="where the temp dirs go")
    ap.add_argument("--watch", default="ranges", choices=["ranges", "covering"], help="the agents' etcd.watch")
    ap.add_argument("--second-prefix", default="",
                    help="give each agent a second tree mapping of this prefix, which no change touches")
    ap.add_argument("--json-out", default=None, help="write every figure here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (logs)")
    ap.add_argument("--synthetic-presence", type=int, default=0, metavar="K",
                    help="only time `etcsync status` over K synthetic presence keys (no agents)")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, interrupted)

    if args.synthetic_presence:
        result = synthetic_presence(args, args.synthetic_presence)
        print(json.dumps(result, indent=1))
        if args.json_out:
            os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
            with open(args.json_out, "w") as f:
                json.dump({"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "command": " ".join(sys.argv),
                           "synthetic_presence": result}, f, indent=1)
        return 0 if result["status_list_exit"] == 0 and result["status_wait_exit"] == 0 else 1

    per_n = {int(k): int(v) for k, v in (item.split("=") for item in args.changes_at.split(",") if item)}
    binary_note = (args.binary_note or args.etcsync) + f"; etcd.watch: {args.watch}" + (
        f"; second mapping {args.second_prefix}" if args.second_prefix else "")
    etcd_version = subprocess.run([args.etcd, "--version"], stdout=subprocess.PIPE).stdout.decode().splitlines()[0]
    results = []
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for n in [int(x) for x in args.agents.split(",")]:
        for mode in args.modes.split(","):
            log(f"=== {mode}, {n} agents")
            try:
                r = run_configuration(args, n, mode, per_n.get(n, args.changes))
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - reported in the table
                log(f"{mode} N={n} failed: {e}")
                r = {"agents": n, "mode": mode, "error": str(e)}
            results.append(r)
            if "error" not in r:
                log(f"{mode} N={n}: last p50 {r['latency_ms']['last']['p50']} ms, p99 {r['latency_ms']['last']['p99']} ms")
    report = {
        "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": " ".join(sys.argv), "binary": binary_note, "etcd": etcd_version,
        "host": {"cpus": os.cpu_count(), "kernel": platform.release()}, "ttl_seconds": args.ttl, "results": results,
    }
    print(f"fleet benchmark, {started}, {etcd_version}, {os.cpu_count()} CPUs")
    print(table(results, binary_note))
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1)
        print(f"\nJSON: {args.json_out}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
