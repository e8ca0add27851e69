"""What the benchmark scripts share: free loopback ports, base64 for etcd's JSON gateway, a
throwaway single-member etcd (data on /dev/shm) that is up when `start_etcd` returns, a put
through the gateway, and the clean-up."""
import base64
import json
import os
import shutil
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


def put(endpoint, key, value):
    """One put through etcd's JSON gateway."""
    request = urllib.request.Request(endpoint + "/v3/kv/put", data=json.dumps({"key": b64(key), "value": b64(value)}).encode(),
                                     method="POST")
    urllib.request.urlopen(request).read()


def stop(processes, directories):
    """Terminates and reaps the processes that are given (None is skipped), then removes the
    directories."""
    for process in processes:
        if process:
            process.terminate()
            process.wait()
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)
