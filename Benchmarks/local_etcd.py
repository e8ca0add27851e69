"""What the benchmark scripts share: free loopback ports, base64 for etcd's JSON gateway, and a
throwaway single-member etcd (data on /dev/shm) that is up when `start_etcd` returns."""
import base64
import os
import socket
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(text):
    return base64.b64encode(text.encode()).decode()


def start_etcd(etcd, *extra, prefix="etcd-"):
    """Starts `etcd` on free loopback ports with a temp data dir: (process, endpoint, data dir).
    The caller terminates the process and removes the directory."""
    data = tempfile.mkdtemp(prefix=prefix, dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    client, peer = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{client}"
    proc = subprocess.Popen(
        [etcd, "--data-dir", data, "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"default=http://127.0.0.1:{peer}", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(endpoint + "/health", timeout=1).read()
            return proc, endpoint, data
        except Exception:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"etcd did not come up at {endpoint}")
