#!/usr/bin/env bash
# Measures the time from SIGTERM to exit when a peer stalls, one scenario after another, with
# RODENT_SHUTDOWN_GRACE=3s, RODENT_DRAIN_DELAY=500ms, RODENT_REQUEST_TIMEOUT=1s:
#
#   idle          stdout to /dev/null, no load: the reference
#   stdout-unread stdout a FIFO that nobody reads, under load, once log lines are dropped
#   stdout-closed stdout a pipe whose read end is closed, under load
#   pid1-unread   stdout-unread with rodent as PID 1 of a PID namespace (root and unshare)
#   otlp-silent   an OTLP collector that accepts connections and never answers
#   otlp-slow     an OTLP collector that answers one byte every 200 ms
#   client-stuck  a client that stops reading an 8 MB response hyper already holds
#   websocket     a WebSocket client on /ws/echo, told of the drain (close 1001), answering at once
#   websocket-ignore  a WebSocket on /ws/echo?drain=ignore, which only the deadline ends
#   reloaded-grace    started with a 30 s grace (RODENT_ENV_FILE), reloaded to 2 s (SIGHUP), then
#                 every peer stalled at once: otlp-silent, a stream ignoring the drain, and
#                 stdout-unread under load; the exit must come inside the new 2 s
#
# Prints one line per scenario (median and worst of RUNS runs, and the exit code) and a
# Markdown table for BENCHMARKS.md. Knobs: BIN (default target/release/rodent, else
# target/debug/rodent), RUNS=5, ONLY=name,name to run some scenarios. Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$( [ -x target/release/rodent ] && echo target/release/rodent || echo target/debug/rodent )}
[ -x "$BIN" ] || { echo "exit-times: $BIN is missing (cargo build)" >&2; exit 1; }
export BIN RUNS=${RUNS:-5}
exec python3 - <<'EOF'
import base64, http.client, json, os, shutil, signal, socket, statistics, struct, subprocess
import sys, tempfile, threading, time

BIN = os.path.abspath(os.environ["BIN"])
RUNS = int(os.environ["RUNS"])
BASE = {
    "PATH": os.environ.get("PATH", ""),
    "RODENT_HOST": "127.0.0.1", "RODENT_PORT": "0", "RODENT_PID_FILE": "",
    "RODENT_SHUTDOWN_GRACE": "3s", "RODENT_DRAIN_DELAY": "500ms",
    "RODENT_REQUEST_TIMEOUT": "1s",
}

def start(env, stdout_kind, wrapper=()):
    """Starts rodent; returns (process, pid to signal, address, reader to hold or None)."""
    tmp = tempfile.mkdtemp(prefix="rodent-exit-")
    if stdout_kind == "fifo":
        path = os.path.join(tmp, "stdout")
        os.mkfifo(path)
        r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(r, True)
        w = os.open(path, os.O_WRONLY)
    else:
        r, w = os.pipe()
    env = {k: v for k, v in {**BASE, **env}.items() if v is not None}
    p = subprocess.Popen(list(wrapper) + [BIN], env=env, stdin=subprocess.DEVNULL,
                         stdout=w, stderr=subprocess.DEVNULL)
    os.close(w)
    reader = os.fdopen(r, "rb", buffering=0)
    addr = None
    line = b""
    while True:
        c = reader.read(1)
        if not c:
            raise SystemExit("rodent ended before it was ready")
        if c != b"\n":
            line += c
            continue
        try:
            l = json.loads(line)
        except ValueError:
            l = {}
        line = b""
        if l.get("message") == "listening":
            addr = l["address"]
        if l.get("message") == "ready":
            break
    shutil.rmtree(tmp, ignore_errors=True)
    target = p.pid
    if wrapper:
        # unshare --fork: signal its child, rodent as PID 1.
        deadline = time.time() + 10
        while time.time() < deadline:
            kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
            if kids:
                target = int(kids[0])
                break
            time.sleep(0.01)
    if stdout_kind == "closed":
        reader.close()
        reader = None
    elif stdout_kind == "devnull":
        # Keep reading, as /dev/null would, until rodent or this script closes it.
        def drain(f):
            try:
                while f.read(65536):
                    pass
            except (OSError, ValueError):
                pass
        threading.Thread(target=drain, args=(reader,), daemon=True).start()
    return p, target, addr, reader

def metric(addr, name):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    for l in text.splitlines():
        if l.startswith(name + " "):
            return float(l.split()[1])
    return None

def load(addr, stop):
    host, port = addr.rsplit(":", 1)
    rid = "r" * 4096
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            while not stop.is_set():
                c.request("GET", "/", headers={"x-request-id": rid})
                c.getresponse().read()
        except OSError:
            time.sleep(0.02)
        except http.client.HTTPException:
            time.sleep(0.02)

def with_load(addr, until_dropped):
    stop = threading.Event()
    threads = [threading.Thread(target=load, args=(addr, stop), daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    if until_dropped:
        deadline = time.time() + 120
        while True:
            dropped = metric(addr, "rodent_log_lines_dropped_total")
            if dropped is None:
                # A build without the counter (to compare with): load long enough to fill
                # 8 MiB of 4 KiB lines several times over.
                time.sleep(10)
                break
            if dropped > 0:
                break
            if time.time() > deadline:
                raise SystemExit("no log line dropped after 120 s of load")
            time.sleep(0.1)
    return stop

def terminate(p, target):
    t0 = time.monotonic()
    os.kill(target, signal.SIGTERM)
    try:
        code = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        return None, "no exit within 30 s"
    return (time.monotonic() - t0) * 1000, code

def silent_collector():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s, f"http://127.0.0.1:{s.getsockname()[1]}"

def slow_collector():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    def serve(conn):
        try:
            conn.recv(65536)
            for b in b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n":
                conn.sendall(bytes([b]))
                time.sleep(0.2)
        except OSError:
            pass
    def accept():
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return s, f"http://127.0.0.1:{s.getsockname()[1]}"

def recv_exact(s, n):
    data = b""
    while len(data) < n:
        c = s.recv(n - len(data))
        if not c:
            raise OSError("closed")
        data += c
    return data

def websocket(addr, path):
    """A WebSocket client: the handshake by hand, then a thread that answers a close frame."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: rodent\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
              f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += recv_exact(s, 1)
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise SystemExit(f"no WebSocket on {path}: {head[:80]!r}")
    def answer():
        try:
            while True:
                h = recv_exact(s, 2)
                n = h[1] & 0x7f
                if n == 126:
                    n = struct.unpack("!H", recv_exact(s, 2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", recv_exact(s, 8))[0]
                payload = recv_exact(s, n)
                if h[0] & 0x0f == 8:
                    mask, code = os.urandom(4), payload[:2]
                    s.sendall(bytes([0x88, 0x80 | len(code)]) + mask
                              + bytes(b ^ mask[i % 4] for i, b in enumerate(code)))
                    return
        except OSError:
            return
    threading.Thread(target=answer, daemon=True).start()
    return s

def otlp_env(endpoint):
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_TIMEOUT": "60000",
            "OTEL_BSP_SCHEDULE_DELAY": "20"}

def scenario(name):
    held = []
    if name == "idle":
        p, target, addr, reader = start({}, "devnull")
    elif name in ("stdout-unread", "stdout-closed"):
        p, target, addr, reader = start({}, "fifo" if name == "stdout-unread" else "closed")
        held.append(with_load(addr, True))
    elif name == "pid1-unread":
        wrapper = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--"]
        p, target, addr, reader = start({}, "fifo", wrapper)
        held.append(with_load(addr, True))
    elif name in ("otlp-silent", "otlp-slow"):
        collector, endpoint = silent_collector() if name == "otlp-silent" else slow_collector()
        held.append(collector)
        p, target, addr, reader = start(otlp_env(endpoint), "devnull")
        host, port = addr.rsplit(":", 1)
        for _ in range(20):
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            c.request("GET", "/")
            c.getresponse().read()
            c.close()
    elif name == "client-stuck":
        p, target, addr, reader = start({"RODENT_BODY_LIMIT": str(16 << 20)}, "devnull")
        host, port = addr.rsplit(":", 1)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((host, int(port)))
        body = b"e" * (8 << 20)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: rodent\r\ncontent-type: application/octet-stream"
                  b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        s.recv(16, socket.MSG_PEEK)
        held.append(s)
    elif name in ("websocket", "websocket-ignore"):
        p, target, addr, reader = start({}, "devnull")
        path = "/ws/echo" if name == "websocket" else "/ws/echo?drain=ignore"
        held.append(websocket(addr, path))
    elif name == "reloaded-grace":
        tmp = tempfile.mkdtemp(prefix="rodent-exit-env-")
        env_file = os.path.join(tmp, "rodent.env")
        with open(env_file, "w") as f:
            f.write("RODENT_SHUTDOWN_GRACE=30s\n")
        collector, endpoint = silent_collector()
        held.append(collector)
        p, target, addr, reader = start({**otlp_env(endpoint), "RODENT_ENV_FILE": env_file,
                                         "RODENT_SHUTDOWN_GRACE": None}, "fifo")
        host, port = addr.rsplit(":", 1)
        stream = http.client.HTTPConnection(host, int(port), timeout=30)
        stream.request("GET", "/stream/60000?drain=ignore")
        stream.getresponse().read(1)
        held.append(stream)
        with open(env_file, "w") as f:
            f.write("RODENT_SHUTDOWN_GRACE=2s\n")
        os.kill(target, signal.SIGHUP)
        deadline = time.time() + 10
        while metric(addr, 'rodent_reloads_total{outcome="applied"}') != 1:
            if time.time() > deadline:
                raise SystemExit("the grace was not reloaded")
            time.sleep(0.02)
        held.append(with_load(addr, True))
        shutil.rmtree(tmp, ignore_errors=True)
    took, code = terminate(p, target)
    for h in held:
        if isinstance(h, threading.Event):
            h.set()
        else:
            h.close()
    if reader:
        reader.close()
    return took, code

names = ["idle", "stdout-unread", "stdout-closed", "pid1-unread", "otlp-silent", "otlp-slow",
         "client-stuck", "websocket", "websocket-ignore", "reloaded-grace"]
only = os.environ.get("ONLY")
if only:
    names = [n for n in names if n in only.split(",")]
if os.geteuid() != 0 or not shutil.which("unshare"):
    names.remove("pid1-unread")
    print("pid1-unread skipped: needs root and unshare", file=sys.stderr)
rows = []
for name in names:
    times, codes = [], set()
    for _ in range(RUNS):
        took, code = scenario(name)
        if took is None:
            # Killed after 30 s: one such run says enough.
            codes.add("none (SIGKILL after 30 s)")
            times.append(float("inf"))
            break
        times.append(took)
        codes.add(str(code))
    row = (name, statistics.median(times), max(times), ",".join(sorted(codes)))
    rows.append(row)
    print(f"{name:14} median {row[1]:6.0f} ms  worst {row[2]:6.0f} ms  exit {row[3]}", flush=True)
print()
print("| scenario | SIGTERM to exit, median | worst | exit code |")
print("| --- | ---: | ---: | --- |")
for name, med, worst, codes in rows:
    print(f"| {name} | {med:.0f} ms | {worst:.0f} ms | {codes} |")
EOF
