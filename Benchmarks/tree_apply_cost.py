#!/usr/bin/env python3
"""What a large in-place tree costs the daemon (docs/benchmarks.md, "A large tree's memory: the
state file"): a throwaway etcd (data on /dev/shm) with N keys of 100 bytes, then for each binary
given, one after the other: `etcsync run` with one in-place tree mapping over them, its peak
memory (VmHWM) 8 s after the first sync, then 20 one-key changes 0.3 s apart: the time from the
put's reply until the file holds the new value (p50, max), the agent's CPU over the changes
divided by their number (/proc/PID/stat: it includes whatever else the daemon did meanwhile,
such as its drift checks) and the peak after them.

Usage: tree_apply_cost.py N ETCSYNC_BIN [ETCSYNC_BIN…]   e.g. tree_apply_cost.py 100000 A B A B
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_etcd import b64, start_etcd
from rss_rollup import seed
def stat(pid):
    f=open(f"/proc/{pid}/stat").read().rsplit(")",1)[1].split()
    return (int(f[11])+int(f[12]))/os.sysconf("SC_CLK_TCK")
def hwm(pid):
    return next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM"))/1024
if len(sys.argv) < 3:
    sys.exit(__doc__)
n=int(sys.argv[1])
etcd, endpoint, data = start_etcd("/usr/bin/etcd", "--quota-backend-bytes", str(8 << 30))
try:
    prefix="/r/"; seed(endpoint, prefix, n)
    for binary in sys.argv[2:]:
        work=tempfile.mkdtemp(dir="/dev/shm")
        open(f"{work}/c.yaml","w").write(f'etcd:\n  endpoints: ["{endpoint}"]\nstate:\n  dir: "{work}/state"\nmappings:\n  - name: t\n    kind: tree\n    swap: in-place\n    prefix: {prefix}\n    dest: "{work}/out"\n')
        agent=subprocess.Popen([binary,"run","-c",f"{work}/c.yaml","--log-level","error"])
        while not os.path.exists(f"{work}/state/state.json"): time.sleep(0.05)
        time.sleep(8)
        peak=hwm(agent.pid)
        c0=stat(agent.pid)
        lat=[]
        for i in range(20):
            v=f"u{i}"*10
            s=time.time()
            urllib.request.urlopen(urllib.request.Request(endpoint + "/v3/kv/put", data=json.dumps({"key": b64(f"{prefix}k{i:07d}"), "value": b64(v)}).encode(), method="POST")).read()
            path=f"{work}/out/k{i:07d}"
            while True:
                try:
                    if open(path).read()==v: break
                except OSError: pass
                time.sleep(0.0005)
            lat.append((time.time()-s)*1000)
            time.sleep(0.3)
        cpu=(stat(agent.pid)-c0)/20*1000
        lat.sort()
        print(f"{binary}: peak {peak:.1f} MiB (after updates {hwm(agent.pid):.1f}), update p50 {lat[10]:.1f} ms max {lat[-1]:.1f} ms, CPU {cpu:.1f} ms/update", flush=True)
        agent.terminate(); agent.wait(); shutil.rmtree(work)
finally:
    etcd.terminate(); etcd.wait(); shutil.rmtree(data, ignore_errors=True)
