#!/usr/bin/env python3
"""The Python grpcio (gRPC C-core) peer of ClientBench: the same three measurements on the
same etcd, printed as one JSON object.

  grpc_peer.py ENDPOINT PREFIX DATA_PREFIX PUTS READS WATCHES ETCD_PID

Puts go to PREFIX/put/N, put -> watch samples to PREFIX/watch/N; the Range reads DATA_PREFIX.
CPU figures are utime+stime of this process (all threads) and of etcd from /proc/PID/stat.

Stubs are generated at start-up from etcd's protos (scripts/prepare-protos) with grpcio-tools.
"""
import json, os, statistics, subprocess, sys, tempfile, threading, time

endpoint, prefix, data_prefix = sys.argv[1], sys.argv[2], sys.argv[3]
puts, reads, watches, etcd_pid = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
TICK = os.sysconf("SC_CLK_TCK")

def cpu_seconds(pid):
    """utime+stime of a process from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
work = tempfile.mkdtemp(prefix="grpc-peer-")
subprocess.run([f"{root}/scripts/prepare-protos", f"{work}/protos"], check=True)
from grpc_tools import protoc  # noqa: E402
args = ["protoc", f"-I{work}/protos", f"--python_out={work}", f"--grpc_python_out={work}",
        "etcd/mvcc/mvccpb/kv.proto", "etcd/auth/authpb/auth.proto", "etcd/etcdserver/etcdserverpb/rpc.proto"]
assert protoc.main(args) == 0
for d in ("etcd", "etcd/mvcc", "etcd/mvcc/mvccpb", "etcd/auth", "etcd/auth/authpb", "etcd/etcdserver", "etcd/etcdserver/etcdserverpb"):
    open(f"{work}/{d}/__init__.py", "a").close()
sys.path.insert(0, work)
import grpc  # noqa: E402
from etcd.etcdserver.etcdserverpb import rpc_pb2 as pb, rpc_pb2_grpc as rpc  # noqa: E402

target = endpoint.split("://", 1)[-1]
channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 2**31 - 1)])
kv = rpc.KVStub(channel)
watch = rpc.WatchStub(channel)

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]

value = b"x" * 100
for i in range(200):  # warm-up
    kv.Put(pb.PutRequest(key=f"{prefix}warm/{i}".encode(), value=value))
lat = []
c0, e0 = cpu_seconds("self"), cpu_seconds(etcd_pid)
start = time.perf_counter()
for i in range(puts):
    t = time.perf_counter()
    kv.Put(pb.PutRequest(key=f"{prefix}put/{i % 1000}".encode(), value=value))
    lat.append(time.perf_counter() - t)
total = time.perf_counter() - start
c1, e1 = cpu_seconds("self"), cpu_seconds(etcd_pid)
put_cpu = ((c1 - c0) * 1e3 / puts, (e1 - e0) * 1e3 / puts)

read_times, count = [], 0
key = data_prefix.encode()
end = key[:-1] + bytes([key[-1] + 1])
for _ in range(reads):
    t = time.perf_counter()
    r = kv.Range(pb.RangeRequest(key=key, range_end=end))
    # Touch every key and value, as a real consumer (and the other clients here) must:
    # upb parses lazily, so len(r.kvs) alone would not materialise them.
    data = [(kv_.key, kv_.value) for kv_ in r.kvs]
    read_times.append(time.perf_counter() - t)
    count = len(data)

# put -> watch event: the event is awaited on the watch stream's iterator itself (blocking,
# as a consumer would), not by spinning.
wkey = f"{prefix}watch/".encode()
wend = wkey[:-1] + bytes([wkey[-1] + 1])
requests_done = threading.Event()
def gen():
    yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=wkey, range_end=wend))
    requests_done.wait()
responses = watch.Watch(gen())
assert next(responses).created
wl = []
c0, e0 = cpu_seconds("self"), cpu_seconds(etcd_pid)
for i in range(watches):
    k = f"{prefix}watch/{i}".encode()
    t = time.perf_counter()
    kv.Put(pb.PutRequest(key=k, value=value))
    resp = next(responses)
    assert len(resp.events) == 1 and resp.events[0].kv.key == k
    wl.append(time.perf_counter() - t)
c1, e1 = cpu_seconds("self"), cpu_seconds(etcd_pid)
requests_done.set()
responses.cancel()

print(json.dumps({
    "put_p50_ms": pct(lat, 50) * 1e3, "put_p99_ms": pct(lat, 99) * 1e3, "put_per_s": puts / total,
    "put_client_cpu_ms": put_cpu[0], "put_etcd_cpu_ms": put_cpu[1],
    "read_s": statistics.median(read_times), "read_keys": count,
    "watch_p50_ms": pct(wl, 50) * 1e3, "watch_p99_ms": pct(wl, 99) * 1e3,
    "watch_client_cpu_ms": (c1 - c0) * 1e3 / watches, "watch_etcd_cpu_ms": (e1 - e0) * 1e3 / watches,
}))
