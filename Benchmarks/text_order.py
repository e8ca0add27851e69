#!/usr/bin/env python3
"""Writes packaging/text-order.txt, the function order `scripts/release-build` links with
(lld's --symbol-ordering-file): every function of the release binary that runs while
`etcsync run` starts and then applies changes, so that the code the agent runs sits in a few
megabytes of `.text` instead of being spread over its 34 MB (each page fault maps a window of
pages around the one it needs, so scattered code keeps most of the binary resident;
docs/benchmarks.md, "The process at rest").

The functions are found by running the binary under valgrind's callgrind (Debian's `valgrind`
package) against a throwaway etcd: one template, one tree and one file mapping, 100 keys,
then 60 changes. Callgrind dumps its profile once start-up is over (`callgrind_control
--dump`) and again after the changes, and the file lists first the functions that ran during
the changes (the daemon's steady state), then those only start-up ran: `etcsync run` gives the
start-up pages back after its first apply (`StartupPages`), and what it faults in again while it
works is then a few contiguous megabytes. The order file only groups code; a stale one (after
code changes) still links, with the functions it no longer names placed as before.

Usage: text_order.py RELEASE_BIN [OUT]   (OUT defaults to packaging/text-order.txt)
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_etcd import put, start_etcd, stop  # noqa: E402


def ran(profile):
    """The functions a callgrind dump gives a cost to (fn= and cfn= lines), in their first
    order of appearance. Names are compressed per file: `(id) name` the first time, `(id)` after."""
    names, seen, by_id = [], set(), {}
    for line in open(profile):
        match = re.match(r"c?fn=\((\d+)\)(?: (.+))?$", line.rstrip("\n"))
        if not match:
            continue
        name = match.group(2) or by_id.get(match.group(1))
        if match.group(2):
            by_id[match.group(1)] = name
        if name and name not in seen:
            seen.add(name)
            names.append(name)
    return names


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    binary = os.path.realpath(sys.argv[1])
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "packaging", "text-order.txt"))
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed: apt-get install valgrind")
    work = tempfile.mkdtemp(prefix="text-order-")
    # valgrind cannot read the DWARF of this binary; the symbol table is all it needs.
    stripped = f"{work}/etcsync"
    subprocess.run(["strip", "--strip-debug", "-o", stripped, binary], check=True)
    etcd, endpoint, data = start_etcd("/usr/bin/etcd")
    agent = None
    try:
        for i in range(100):
            put(endpoint, f"/t/k{i:03d}", "v" * 100)
        put(endpoint, "/f/one", "value")
        with open(f"{work}/t.tmpl", "w") as f:
            f.write('{{- range gets "/t/*" }}{{ .Key }}={{ .Value }}\n{{- end }}\n')
        with open(f"{work}/c.yaml", "w") as f:
            f.write(f'etcd:\n  endpoints: ["{endpoint}"]\nstate:\n  dir: "{work}/state"\nmappings:\n'
                    f'  - name: t\n    prefix: /t/\n    template: "{work}/t.tmpl"\n    dest: "{work}/out"\n'
                    f'  - name: tree\n    kind: tree\n    prefix: /t/\n    dest: "{work}/tree"\n'
                    f'  - name: one\n    kind: file\n    key: /f/one\n    dest: "{work}/one"\n')
        profile = f"{work}/callgrind.out"
        agent = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}", "--demangle=no",
                                  "--dump-instr=no", stripped, "run", "-c", f"{work}/c.yaml", "--log-level", "error"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 600
        while not (os.path.exists(f"{work}/out") and os.path.exists(f"{work}/one")) and time.time() < deadline:
            time.sleep(1)
        # Past the daemon's release of its start-up pages (5 s after the first apply): that code
        # runs once and belongs with start-up.
        time.sleep(10)
        subprocess.run(["callgrind_control", "--dump=start-up", str(agent.pid)], check=True, stdout=subprocess.DEVNULL)
        for change in range(60):
            put(endpoint, f"/t/k{change % 100:03d}", f"c{change}" * 20)
            if change % 10 == 0:
                put(endpoint, "/f/one", f"value {change}")
            time.sleep(0.25)
        time.sleep(10)
        subprocess.run(["callgrind_control", "--dump=steady", str(agent.pid)], check=True, stdout=subprocess.DEVNULL)
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=120)
        agent = None
        # callgrind writes PROFILE.1 (start-up), PROFILE.2 (the changes), PROFILE (the exit).
        dumps = sorted((f for f in os.listdir(work) if f.startswith("callgrind.out.")), key=lambda f: int(f.rsplit(".", 1)[1]))
        if len(dumps) < 2:
            sys.exit(f"callgrind wrote {dumps}, not the two dumps asked for")
        steady, startup = ran(f"{work}/{dumps[1]}"), ran(f"{work}/{dumps[0]}")
        steady_set = set(steady)
        names = steady + [name for name in startup if name not in steady_set]
        defined = set()
        for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTwW":
                defined.add(parts[2])
        kept = [name for name in names if name in defined]
        with open(out, "w") as f:
            f.write("\n".join(kept) + "\n")
        kept_steady = sum(1 for name in steady if name in defined)
        print(f"{len(kept)} functions that ran ({kept_steady} of them while changes were applied), of {len(defined)}"
              f" in the binary, written to {out}")
    finally:
        stop([agent, etcd], [work, data])


if __name__ == "__main__":
    main()
