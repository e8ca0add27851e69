#!/usr/bin/env python3
"""What one put looks like on the wire, client by client (issue 16): HTTP/2 frames, TCP
segments (≈ writes, flushes), bytes, WINDOW_UPDATE and PING traffic, header block sizes.

  Benchmarks/wire_capture.py [--puts N] [--rounds R] [--clients swift,swift-grpc,go,grpcio]
                             [--clientbench PATH] [--go PATH] [--etcd PATH]
                             [--json-out FILE] [--keep-pcaps DIR] [--trace K]

For each client in turn: a throwaway etcd on loopback (plaintext h2c, data on /dev/shm, free
ports; Benchmarks/local_etcd.py), `tcpdump -i lo -w` on that etcd's client port, and the client
alone, in a process of its own, making 200 warm-up puts and then N sequential puts (100-byte
values). The clients:
  swift       EtcdClient as shipped (DirectTransport)      `ClientBench wire-puts EP PREFIX N`
  swift-grpc  EtcdClient through grpc-swift-2               `ClientBench wire-puts EP PREFIX N grpc`
              (the package switch directUnaryCalls = false)
  go          Go clientv3 3.4                               `clientbench-go puts EP PREFIX N`
  grpcio      Python grpcio (C-core), this script itself    `wire_capture.py --grpcio-puts EP PREFIX N`

The pcap is then read here, in pure Python: each TCP direction reassembled, the client's
24-byte preface skipped, the HTTP/2 frame headers decoded. Only the connection that carried the
measured puts counts (any other on that port -- an idle one of the client, leftovers of the
start-up /health probe -- is left out but counted as opened if its SYN was seen), and on it only the window from the first measured put's request HEADERS to the last one's
trailers: warm-up, connection set-up and shut-down fall outside. Every figure is divided by N.
A "segment" is a captured TCP packet carrying payload: on loopback, with TCP_NODELAY (all four
clients set it; NIO's ClientBootstrap and DirectTransport do), one write/flush of the sender.

Needs: etcd (Debian's etcd-server, /usr/bin/etcd); tcpdump (Debian's tcpdump package: `apt-get
install tcpdump`) and the right to capture on lo (root or CAP_NET_RAW); the release ClientBench
(`scripts/release-build --product ClientBench`); the Go peer built as scripts/bench builds it
(.build/go-clientv3/clientbench-go); grpcio and grpcio-tools (scripts/bench installs them).
--rounds R captures every client R times, the clients taking turns (how writes coalesce
depends on timing, so the segment counts move from run to run); a cell then shows the range.
--trace K adds, per client, the packets of K puts from the middle of the run, frame by frame.
Runs N+200 puts per client, a few seconds each; nothing is left running.
"""
import argparse
import bisect
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_TYPES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE",
               6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}
CLIENTS = {
    "swift": "EtcdClient (DirectTransport)",
    "swift-grpc": "EtcdClient via grpc-swift-2",
    "go": "Go clientv3 3.4",
    "grpcio": "grpcio (C-core)",
}


def grpcio_puts(endpoint, prefix, count):
    """The grpcio client: stubs generated from etcd's protos as Benchmarks/python/grpc_peer.py
    does, then 200 warm-up puts and `count` puts on one channel."""
    work = tempfile.mkdtemp(prefix="wire-grpcio-")
    try:
        subprocess.run([f"{ROOT}/scripts/prepare-protos", f"{work}/protos"], check=True)
        from grpc_tools import protoc
        assert protoc.main(["protoc", f"-I{work}/protos", f"--python_out={work}", f"--grpc_python_out={work}",
                            "etcd/mvcc/mvccpb/kv.proto", "etcd/auth/authpb/auth.proto",
                            "etcd/etcdserver/etcdserverpb/rpc.proto"]) == 0
        for d in ("etcd", "etcd/mvcc", "etcd/mvcc/mvccpb", "etcd/auth", "etcd/auth/authpb", "etcd/etcdserver",
                  "etcd/etcdserver/etcdserverpb"):
            open(f"{work}/{d}/__init__.py", "a").close()
        sys.path.insert(0, work)
        import grpc
        from etcd.etcdserver.etcdserverpb import rpc_pb2 as pb, rpc_pb2_grpc as rpc
        channel = grpc.insecure_channel(endpoint.split("://", 1)[-1])
        kv = rpc.KVStub(channel)
        value = b"x" * 100
        for i in range(200):
            kv.Put(pb.PutRequest(key=f"{prefix}warm/{i}".encode(), value=value))
        for i in range(count):
            kv.Put(pb.PutRequest(key=f"{prefix}put/{i % 1000}".encode(), value=value))
        channel.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# MARK: pcap → TCP connections

def read_pcap(path):
    """Yields (index, seconds, IP packet bytes) from a classic pcap file (tcpdump -w)."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    for endian, nano in (("<", False), (">", False), ("<", True), (">", True)):
        if struct.unpack(endian + "I", magic)[0] == (0xA1B23C4D if nano else 0xA1B2C3D4):
            break
    else:
        raise SystemExit(f"{path}: not a pcap file (magic {magic.hex()}); pcapng is not read here")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    offset, index = 24, 0
    while offset + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(endian + "IIII", data[offset:offset + 16])
        frame = data[offset + 16:offset + 16 + incl]
        offset += 16 + incl
        if incl != orig:
            raise SystemExit(f"{path}: packet {index} truncated to {incl} of {orig} bytes (capture with -s 0)")
        if linktype == 1:  # Ethernet (Linux lo)
            ethertype, ip = struct.unpack("!H", frame[12:14])[0], frame[14:]
        elif linktype == 113:  # Linux cooked
            ethertype, ip = struct.unpack("!H", frame[14:16])[0], frame[16:]
        elif linktype == 276:  # Linux cooked v2
            ethertype, ip = struct.unpack("!H", frame[0:2])[0], frame[20:]
        elif linktype in (12, 101):  # raw IP
            ethertype, ip = (0x0800 if frame[0] >> 4 == 4 else 0x86DD), frame
        else:
            raise SystemExit(f"{path}: link type {linktype} not handled")
        yield index, sec + frac / (1e9 if nano else 1e6), ethertype, ip
        index += 1


def tcp_packets(path):
    """Yields (index, seconds, src, sport, dst, dport, flags, seq, payload) for TCP packets."""
    for index, ts, ethertype, ip in read_pcap(path):
        if ethertype == 0x0800:
            ihl, total, proto = (ip[0] & 15) * 4, struct.unpack("!H", ip[2:4])[0], ip[9]
            src, dst, tcp = ip[12:16], ip[16:20], ip[ihl:total]
        elif ethertype == 0x86DD:
            proto, plen = ip[6], struct.unpack("!H", ip[4:6])[0]
            src, dst, tcp = ip[8:24], ip[24:40], ip[40:40 + plen]
        else:
            continue
        if proto != 6:
            continue
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        doff, flags = (tcp[12] >> 4) * 4, tcp[13]
        yield index, ts, src, sport, dst, dport, flags, seq, tcp[doff:]


class Direction:
    """One direction of a TCP connection: the reassembled byte stream and, for each packet,
    where its payload lies in it."""

    def __init__(self):
        self.stream = bytearray()
        self.next_seq = None
        self.packets = []  # (pcap index, seconds, stream offset, payload length)
        self.starts = []  # stream offsets of the packets with payload, for bisect
        self.with_payload = []  # indexes into packets
        self.retransmitted = 0
        self.gaps = 0
        self.syn = False

    def add(self, index, ts, flags, seq, payload):
        self.syn = self.syn or bool(flags & 0x02)
        if self.next_seq is None:
            self.next_seq = seq + 1 if flags & 0x02 else seq  # SYN takes one sequence number
        elif flags & 0x02:
            return
        start = len(self.stream)
        if payload:
            end_seq = (seq + len(payload)) & 0xFFFFFFFF
            skip = (self.next_seq - seq) & 0xFFFFFFFF
            if skip == 0:
                self.next_seq = end_seq
            elif skip < 1 << 31:  # old bytes again: keep only what is new
                self.retransmitted += 1
                payload = payload[skip:]
                if payload:
                    self.next_seq = end_seq
            else:  # bytes missing (the capture dropped them): frames decoded past here are garbage
                self.gaps += 1
                self.next_seq = end_seq
            self.stream += payload
        self.packets.append((index, ts, start, len(payload)))
        if payload:
            self.starts.append(start)
            self.with_payload.append(len(self.packets) - 1)

    def packet_at(self, offset):
        """The packet (index into packets) whose payload holds byte `offset` of the stream."""
        return self.with_payload[bisect.bisect_right(self.starts, offset) - 1]


def connections(path, server_port):
    """TCP connections to `server_port`: {client port: (client→server, server→client)}."""
    conns = {}
    for index, ts, src, sport, dst, dport, flags, seq, payload in tcp_packets(path):
        if dport == server_port:
            conns.setdefault(sport, (Direction(), Direction()))[0].add(index, ts, flags, seq, payload)
        elif sport == server_port:
            conns.setdefault(dport, (Direction(), Direction()))[1].add(index, ts, flags, seq, payload)
    return conns


# MARK: HTTP/2 frames

def frames(direction, client_side):
    """The HTTP/2 frames of one direction: (type, flags, stream, stream offset, payload)."""
    data, offset = direction.stream, 0
    if client_side:
        if not data.startswith(PREFACE):
            return []
        offset = len(PREFACE)
    out = []
    while offset + 9 <= len(data):
        length = int.from_bytes(data[offset:offset + 3], "big")
        kind, flags = data[offset + 3], data[offset + 4]
        stream = int.from_bytes(data[offset + 5:offset + 9], "big") & 0x7FFFFFFF
        if offset + 9 + length > len(data):
            break  # cut off by the end of the capture
        out.append((kind, flags, stream, offset, bytes(data[offset + 9:offset + 9 + length])))
        offset += 9 + length
    return out


def header_block_size(kind, flags, payload):
    """Bytes of HPACK header block in a HEADERS or CONTINUATION frame (no padding or priority)."""
    size = len(payload)
    if kind == 1:
        if flags & 0x08:
            size -= 1 + payload[0]
        if flags & 0x20:
            size -= 5
    return size


def trace(up, down, up_frames, down_frames, first, last):
    """The packets of the puts on streams `first`...`last`, both directions, one line each:
    microseconds from the first, direction, payload bytes, the frames that begin in it."""
    def begin(d, fl, stream, pick):
        offsets = [off + (9 + len(p) - 1 if pick == "end" else 0) for k, f, s, off, p in fl
                   if s == stream and (k == 1 if pick == "start" else (k in (0, 1) and f & 0x01))]
        return d.packets[d.packet_at(offsets[0] if pick == "start" else offsets[-1])][0]
    lo, hi = begin(up, up_frames, first, "start"), begin(down, down_frames, last, "end")
    names = {0: "DATA", 1: "HEADERS", 3: "RST_STREAM", 4: "SETTINGS", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE"}
    events = []
    for arrow, d, fl in (("client → etcd", up, up_frames), ("etcd → client", down, down_frames)):
        starting = {}
        for k, f, stream, off, p in fl:
            name = names.get(k, f"type{k}") + (" ACK" if k in (4, 6) and f & 0x01 else "")
            name += "(END_STREAM)" if k in (0, 1) and f & 0x01 else ""
            starting.setdefault(d.packets[d.packet_at(off)][0], []).append(name)
        events += [(i, ts, arrow, n, starting.get(i, [])) for i, ts, _, n in d.packets if lo <= i <= hi]
    events.sort()
    return [f"{(ts - events[0][1]) * 1e6:6.0f} µs  {arrow}  {n:4d} B  {' '.join(f) or ('(pure ACK)' if not n else '(continues a frame)')}"
            for i, ts, arrow, n, f in events]


def analyse(path, server_port, prefix, puts, trace_puts=0):
    """Per-put figures of the connection that carried the puts to `prefix`put/."""
    marker = f"{prefix}put/".encode()
    candidates = []
    for client_port, (up, down) in connections(path, server_port).items():
        up_frames, down_frames = frames(up, True), frames(down, False)
        data = {}
        for kind, flags, stream, offset, payload in up_frames:
            if kind == 0:
                data[stream] = data.get(stream, b"") + payload
        measured = sorted(s for s, body in data.items() if marker in body)
        candidates.append((len(measured), client_port, up, down, up_frames, down_frames, measured))
    candidates.sort(key=lambda c: c[0], reverse=True)
    if not candidates or not candidates[0][0]:
        raise SystemExit(f"{path}: no connection carries puts to {prefix}put/")
    count, client_port, up, down, up_frames, down_frames, measured = candidates[0]
    if count != puts:
        raise SystemExit(f"{path}: {count} measured puts found on the wire, expected {puts}")
    first, last = measured[0], measured[-1]
    # The window, in pcap packet order: from the packet carrying the first byte of the first
    # measured put's HEADERS to the one carrying the last byte of the last put's trailers.
    start = next(up.packets[up.packet_at(off)][0] for kind, flags, s, off, p in up_frames if kind == 1 and s == first)
    trailers = [(off, len(p)) for kind, flags, s, off, p in down_frames if s == last and flags & 0x01 and kind in (0, 1)]
    if not trailers:
        raise SystemExit(f"{path}: the last measured put (stream {last}) has no response END_STREAM")
    end_offset = trailers[-1][0] + 9 + trailers[-1][1] - 1
    end = down.packets[down.packet_at(end_offset)][0]
    t0 = up.packets[up.packet_at(next(off for k, f, s, off, p in up_frames if k == 1 and s == first))][1]
    t1 = down.packets[down.packet_at(end_offset)][1]

    def side(direction, frame_list):
        inside = [p for p in direction.packets if start <= p[0] <= end]
        f = {"segments": sum(1 for p in inside if p[3]), "pure_acks": sum(1 for p in inside if not p[3]),
             "bytes": sum(p[3] for p in inside)}
        counts = {name: 0 for name in ("HEADERS", "DATA", "WINDOW_UPDATE", "PING", "PING ACK", "RST_STREAM",
                                       "SETTINGS", "GOAWAY", "other")}
        header_bytes = data_bytes = total = 0
        for kind, flags, stream, offset, payload in frame_list:
            if not start <= direction.packets[direction.packet_at(offset)][0] <= end:
                continue
            total += 1
            name = FRAME_TYPES.get(kind, "other")
            if kind == 6 and flags & 0x01:
                name = "PING ACK"
            counts[name if name in counts else "other"] += 1
            if kind in (1, 9):
                header_bytes += header_block_size(kind, flags, payload)
            if kind == 0:
                data_bytes += len(payload)
        f["frames"] = total
        f.update(counts)
        f["header_block_bytes"] = header_bytes
        f["header_block_bytes_per_HEADERS"] = header_bytes / counts["HEADERS"] if counts["HEADERS"] else 0
        f["data_payload_bytes"] = data_bytes
        f["retransmitted"], f["gaps"] = direction.retransmitted, direction.gaps
        return f

    result = {"client_to_etcd": side(up, up_frames), "etcd_to_client": side(down, down_frames)}
    for d in result.values():
        for key in list(d):
            if key not in ("header_block_bytes_per_HEADERS", "retransmitted", "gaps"):
                d[key] = d[key] / puts
    result["puts"] = puts
    result["connections_opened"] = sum(1 for c in candidates if c[2].syn)
    if trace_puts:
        middle = len(measured) // 2
        result["trace"] = trace(up, down, up_frames, down_frames, measured[middle],
                                measured[min(len(measured), middle + trace_puts) - 1])
    result["us_per_put_under_tcpdump"] = (t1 - t0) / puts * 1e6
    return result


# MARK: running the clients

def capture(name, command_for, args, etcd_binary, pcap):
    """One client against a throwaway etcd of its own, under tcpdump; returns the figures."""
    sys.path.insert(0, HERE)
    import local_etcd
    etcd, endpoint, data_dir = local_etcd.start_etcd(etcd_binary, prefix="wire-etcd-")
    dump = None
    try:
        port = int(endpoint.rsplit(":", 1)[1])
        dump = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-s", "0", "-U", "--immediate-mode", "-B", "16384", "-w", pcap,
                                 "tcp", "port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = dump.stderr.readline()
        if "listening on" not in line:
            raise SystemExit(f"tcpdump did not start: {line.strip()} {dump.stderr.read().strip()}")
        prefix = "/wire/"  # the same for every client (each has an etcd of its own): DATA sizes compare
        client = subprocess.run(command_for(endpoint, prefix), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if client.returncode != 0:
            raise SystemExit(f"{name} failed ({client.returncode}): {client.stdout[-2000:]}")
        # Let tcpdump drain what the kernel holds for it: wait until the file stops growing.
        size = -1
        while size != os.path.getsize(pcap):
            size = os.path.getsize(pcap)
            time.sleep(0.5)
        dump.send_signal(signal.SIGINT)
        _, tail = dump.communicate(timeout=10)
        dump = None
        dropped = [l for l in tail.splitlines() if "dropped by kernel" in l]
        if dropped and not dropped[0].startswith("0 "):
            raise SystemExit(f"tcpdump lost packets ({dropped[0]}); run again")
        return analyse(pcap, port, prefix, args.puts, args.trace)
    finally:
        if dump:
            dump.send_signal(signal.SIGINT)
            dump.wait()
        local_etcd.stop([etcd], [data_dir])


ROWS = [
    ("TCP segments with payload (≈ writes)", "segments", 2),
    ("pure ACK segments", "pure_acks", 2),
    ("TCP payload bytes", "bytes", 1),
    ("HTTP/2 frames", "frames", 2),
    ("HEADERS", "HEADERS", 2),
    ("HEADERS block bytes", "header_block_bytes", 1),
    ("HEADERS block bytes per HEADERS frame", "header_block_bytes_per_HEADERS", 1),
    ("DATA", "DATA", 2),
    ("DATA payload bytes", "data_payload_bytes", 1),
    ("WINDOW_UPDATE", "WINDOW_UPDATE", 3),
    ("PING", "PING", 3),
    ("PING ACK", "PING ACK", 3),
    ("RST_STREAM", "RST_STREAM", 3),
    ("SETTINGS", "SETTINGS", 3),
    ("GOAWAY", "GOAWAY", 3),
    ("other frames", "other", 3),
]


def cell(values, digits):
    """One figure, or its range over the rounds."""
    lo, hi = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return lo if lo == hi else f"{lo}–{hi}"


def table(results):
    """`results`: {client: [figures of each round]}."""
    names = list(results)
    lines = ["| per put | " + " | ".join(CLIENTS[n] for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for direction, title in (("client_to_etcd", "client → etcd"), ("etcd_to_client", "etcd → client")):
        lines.append(f"| **{title}** |" + " |" * len(names))
        for label, key, digits in ROWS:
            lines.append(f"| {label} | " + " | ".join(cell([r[direction][key] for r in results[n]], digits) for n in names) + " |")
    lines.append("| µs per put (under tcpdump) | " + " | ".join(cell([r["us_per_put_under_tcpdump"] for r in results[n]], 0) for n in names) + " |")
    lines.append("| TCP connections opened (all, idle ones too) | " + " | ".join(cell([r["connections_opened"] for r in results[n]], 0) for n in names) + " |")
    return "\n".join(lines)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--grpcio-puts":
        grpcio_puts(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=1000)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--clientbench", default=f"{ROOT}/.build-release/release/ClientBench")
    parser.add_argument("--go", default=f"{ROOT}/.build/go-clientv3/clientbench-go")
    parser.add_argument("--etcd", default="/usr/bin/etcd")
    parser.add_argument("--rounds", type=int, default=1, help="capture each client R times (clients taking turns); cells show the range")
    parser.add_argument("--json-out")
    parser.add_argument("--keep-pcaps", metavar="DIR")
    parser.add_argument("--trace", type=int, default=0, metavar="K",
                        help="also print, per client, the packets of K puts from the middle of the run")
    args = parser.parse_args()
    if args.puts < 1 or args.rounds < 1:
        parser.error("--puts and --rounds must be at least 1")
    clients = args.clients.split(",")
    for c in clients:
        if c not in CLIENTS:
            parser.error(f"--clients: unknown client {c!r} (known: {', '.join(CLIENTS)})")
    if not shutil.which("tcpdump"):
        raise SystemExit("tcpdump not found: apt-get install tcpdump (Debian's package)")
    for c, path in (("swift", args.clientbench), ("swift-grpc", args.clientbench), ("go", args.go), ("etcd", args.etcd)):
        if (c in clients or c == "etcd") and not os.access(path, os.X_OK):
            raise SystemExit(f"{path}: not found or not executable (needed for {c}; see the docstring)")
    commands = {
        "swift": lambda ep, prefix: [args.clientbench, "wire-puts", ep, prefix, str(args.puts)],
        "swift-grpc": lambda ep, prefix: [args.clientbench, "wire-puts", ep, prefix, str(args.puts), "grpc"],
        "go": lambda ep, prefix: [args.go, "puts", ep, prefix, str(args.puts)],
        "grpcio": lambda ep, prefix: [sys.executable, os.path.abspath(__file__), "--grpcio-puts", ep, prefix, str(args.puts)],
    }
    pcaps = args.keep_pcaps or tempfile.mkdtemp(prefix="wire-pcaps-")
    os.makedirs(pcaps, exist_ok=True)
    results = {c: [] for c in clients}
    try:
        for round in range(1, args.rounds + 1):
            for c in clients:
                print(f"round {round}: {CLIENTS[c]}, 200 warm-up puts, then {args.puts} ...", file=sys.stderr)
                results[c].append(capture(c, commands[c], args, args.etcd, f"{pcaps}/{c}-{round}.pcap"))
    finally:
        if not args.keep_pcaps:
            shutil.rmtree(pcaps, ignore_errors=True)
    etcd_version = subprocess.run([args.etcd, "--version"], stdout=subprocess.PIPE, text=True).stdout.splitlines()[0]
    print(f"{args.puts} sequential puts (100-byte values) per client after 200 warm-up, each client alone on a fresh "
          f"{etcd_version} (h2c on loopback), {args.rounds} round(s) (a range: lowest–highest round); figures per put, "
          f"on the puts' connection, from the first request to the last response\n")
    print(table(results))
    for c, rounds in results.items():
        if rounds[-1].get("trace"):
            print(f"\n{CLIENTS[c]}, {args.trace} put(s) from the middle of the last round, packet by packet:")
            print("\n".join("    " + line for line in rounds[-1]["trace"]))
        for r in rounds:
            for d in ("client_to_etcd", "etcd_to_client"):
                if r[d]["retransmitted"] or r[d]["gaps"]:
                    print(f"note: {CLIENTS[c]} {d}: {r[d]['retransmitted']} retransmitted, {r[d]['gaps']} gaps")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"puts": args.puts, "rounds": args.rounds, "etcd": etcd_version,
                       "clients": {CLIENTS[c]: r for c, r in results.items()}},
                      f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
