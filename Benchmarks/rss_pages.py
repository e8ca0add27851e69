#!/usr/bin/env python3
"""Where the agent's file-backed RSS comes from, for issue 15 §2: `etcsync run` with one
template mapping over 100 keys (etcd on /dev/shm), then the binary's resident pages
(/proc/PID/pagemap, needs root) per ELF section, 10 s after the first render (after the
daemon's own release of its start-up pages, `StartupPages`),, and the resident `.text` per Swift module
(from the mangled name of the symbol each page starts in; the standard library and C code
count as "C/stdlib").

Then, to tell the pages touched once at start from those the steady state needs, the
binary's mappings are paged out from outside (`process_madvise(MADV_PAGEOUT)`, Linux 5.10+),
300 updates are applied, and the same breakdown is printed again.

Usage: rss_pages.py ETCSYNC_BIN [KEYS]   (KEYS: 100 unless given)
"""
import bisect
import collections
import ctypes
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_etcd import put, start_etcd, stop  # noqa: E402
from rss_rollup import seed  # noqa: E402

SYS_PIDFD_OPEN, SYS_PROCESS_MADVISE, MADV_PAGEOUT = 434, 440, 21


class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def rollup(pid):
    fields = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return f"RSS {fields['Rss']:.1f} MiB = anonymous {fields['Anonymous']:.1f} + file-backed {fields['Rss'] - fields['Anonymous']:.1f}"


def sections(binary):
    found = []
    for line in subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True).stdout.splitlines():
        parts = line.replace("[ ", "[").split()
        if len(parts) > 6 and parts[0].startswith("[") and parts[0] != "[Nr]":
            address, size = int(parts[3], 16), int(parts[5], 16)
            if address and size:
                found.append((parts[1], address, size))
    return found


def present(pid, start, end):
    """One bit per page of [start, end): mapped and resident in this process."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(start // 4096 * 8)
        data = f.read(((end + 4095) // 4096 - start // 4096) * 8)
    return [struct.unpack_from("<Q", data, i)[0] >> 63 for i in range(0, len(data), 8)]


def module(name):
    match = re.match(r"^\$s(\d+)", name)
    if match:
        return name[len(match.group(0)):][:int(match.group(1))]
    if name.startswith("_Z"):
        return "C++"
    return "C/stdlib"


def breakdown(pid, binary, base, symbols):
    addresses = [a for a, _ in symbols]
    for name, address, size in sections(binary):
        pages = sum(present(pid, base + address, base + address + size))
        if pages * 4096 >= 256 << 10:
            print(f"  {name:20s} {size / 1048576:6.2f} MiB, resident {pages * 4 / 1024:6.2f} MiB")
        if name == ".text":
            text = (address, size)
    by_module = collections.Counter()
    for index, bit in enumerate(present(pid, base + text[0], base + text[0] + text[1])):
        if bit:
            page = (base + text[0]) // 4096 * 4096 + index * 4096 - base
            by_module[module(symbols[max(bisect.bisect_right(addresses, page) - 1, 0)][1])] += 1
    print("  resident .text by module, MiB: " + ", ".join(f"{m} {c * 4 / 1024:.2f}" for m, c in by_module.most_common(14)))



def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    count = int(sys.argv[2]) if len(sys.argv) == 3 else 100
    binary = os.path.realpath(sys.argv[1])
    symbols = []
    for line in subprocess.run(["nm", "-n", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            symbols.append((int(parts[0], 16), parts[2]))
    etcd, endpoint, data = start_etcd("/usr/bin/etcd")
    work = tempfile.mkdtemp(prefix="rss-pages-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    agent = None
    try:
        seed(endpoint, "/x/", count)
        with open(f"{work}/t.tmpl", "w") as f:
            f.write('{{- range gets "/x/*" }}{{ .Key }}={{ .Value }}\n{{- end }}\n')
        with open(f"{work}/c.yaml", "w") as f:
            f.write(f'etcd:\n  endpoints: ["{endpoint}"]\nstate:\n  dir: "{work}/state"\nmappings:\n  - name: t\n'
                    f'    prefix: /x/\n    template: "{work}/t.tmpl"\n    dest: "{work}/out"\n')
        agent = subprocess.Popen([binary, "run", "-c", f"{work}/c.yaml", "--log-level", "error"])
        deadline = time.time() + 120
        while not os.path.exists(f"{work}/out") and time.time() < deadline:
            time.sleep(0.1)
        # Past the daemon's own release of its start-up pages, 5 s after the first apply.
        time.sleep(10)
        mappings = []
        for line in open(f"/proc/{agent.pid}/maps"):
            parts = line.split()
            if len(parts) >= 6 and os.path.realpath(parts[5]) == binary:
                low, high = (int(x, 16) for x in parts[0].split("-"))
                mappings.append((low, high))
        base = min(low for low, _ in mappings)
        print(f"at rest, {count} keys: {rollup(agent.pid)}")
        breakdown(agent.pid, binary, base, symbols)
        libc = ctypes.CDLL(None, use_errno=True)
        pidfd = libc.syscall(SYS_PIDFD_OPEN, agent.pid, 0)
        for low, high in mappings:
            vector = IOVec(low, high - low)
            if libc.syscall(SYS_PROCESS_MADVISE, pidfd, ctypes.byref(vector), 1, MADV_PAGEOUT, 0) < 0:
                print(f"process_madvise failed: errno {ctypes.get_errno()}")
        time.sleep(0.5)
        print(f"right after paging the binary out: {rollup(agent.pid)}")
        for update in range(300):
            put(endpoint, f"/x/k{update % count:07d}", f"u{update}" * 20)
            time.sleep(0.02)
        time.sleep(1)
        print(f"after 300 updates: {rollup(agent.pid)}")
        breakdown(agent.pid, binary, base, symbols)
    finally:
        stop([agent, etcd], [work, data])


if __name__ == "__main__":
    main()
