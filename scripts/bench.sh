#!/usr/bin/env bash
# Benchmarks rodent against two references serving the same `GET /` body, side by side in one
# run, alternating the servers round after round, on loopback: the bare axum baseline
# (examples/baseline.rs), and the typical axum service a user would write instead of rodent
# (examples/typical.rs: tower-http's request id, TraceLayer, timeout, body limit and
# catch-panic in one ServiceBuilder, a JSON line per request through tracing-appender).
#
#   1. throughput, p50/p99 latency and server CPU time per request of `GET /` (wrk, keep-alive):
#      rodent's full default stack (access log included, written to /dev/null) against the
#      baseline and the typical service (its log also to /dev/null), plus rodent with
#      RODENT_LOG=warn to show what request logging costs;
#   1b. the same with every request traced to a local OTLP sink, against no endpoint;
#   2. resident memory, idle and holding kept-alive connections (1,000 then 10,000, each having
#      served one request), and from that the memory per connection: rodent, the typical
#      service and the baseline, one after the other in the same run;
#   3. time from exec to `/readyz` 200, and from SIGTERM to exit with RODENT_DRAIN_DELAY=0, idle;
#   4. the container image size, when Docker has a `rodent` image;
#   5. user-space instructions per request (valgrind's callgrind): exact and repeatable, so the
#      one figure that a busy machine does not disturb, with the functions they go to (rodent,
#      both references, rodent with RODENT_LOG=warn);
#   6. with PROFILE=1, where rodent's CPU goes under load (perf);
#   7. gRPC: unary `rodent.echo.v1.Echo/Echo` calls per second (ghz, h2c) against the bare tonic
#      server (examples/grpc_baseline.rs) round after round, with server CPU per call; and
#      resident memory with idle gRPC connections held (each having made one call), from which
#      the memory per idle gRPC connection, for both.
#   8. (only when asked: SECTIONS=8) the Kubernetes scenarios on the three-node cluster
#      `scripts/kube up` runs: `scripts/test --test kubernetes`, each scenario's `figure:` lines
#      (requests, failed, p99 during the event, its duration; rodent beside the servers that must
#      lose) and the suite's wall time. Needs the cluster up and `scripts/test --no-run` built.
#   9. what HTTPS costs: rodent serving GET / over TLS (RODENT_TLS_CERT, an ECDSA P-256
#      certificate made here with openssl) against the same rodent over plain HTTP, in the same
#      run, alternating: throughput and server CPU per request on kept-alive connections (wrk),
#      and callgrind's instructions per request, kept alive and with a new connection (a full
#      handshake) per request.
#
# The server and wrk are pinned to different cores (taskset) so they do not take turns on one.
# CPU time per request (from /proc/PID/stat) is the figure least disturbed by other work on the
# machine: throughput and p99 are only worth comparing from a quiet machine.
# Results go to stdout and to $OUT/results.md; BENCHMARKS.md explains them.
#
# Knobs (environment):
#   SECTIONS="1 1b 2 3 4 5 6 7 9"  which sections run (5 also needs CALLGRIND=1, 6 PROFILE=1), e.g.
#                              SECTIONS="1 2" for the comparison with both references alone
#   ROUNDS=5 DURATION=10s CONNECTIONS=64   section 1 and 1b (rounds per server, wrk's -d, -c)
#   HOLD="1000 10000"          section 2: the connection counts held, ascending, on one client
#                              that opens more between readings; the file-descriptor limit
#                              (ulimit -n) is raised to the largest count plus 1,024 if lower
#   RUNS=50                    section 3: start/stop runs per server
#   GRPC_CONCURRENCY=50 GRPC_CONNECTIONS=4  section 7a (ghz's -c and --connections; ROUNDS and
#                              DURATION as above)
#   GRPC_HOLD=1000             section 7b: idle gRPC connections held
#   CALLGRIND=1 PROFILE=0 OUT=target/bench
#   BEFORE=REV                 section 5 also counts rodent as it was at git revision REV
#                              (`rodent-before`), built from a copy of that tree into the same
#                              target directory (kept as $OUT/rodent-before): a change's cost,
#                              measured side by side. BEFORE=path/to/binary reuses such a build
#   BUILT=DIR                  use the binaries a release build already left in DIR (rodent,
#                              examples/...), such as `scripts/test`'s
#                              target/x86_64-unknown-linux-gnu/release, instead of building:
#                              the same code without its symbol table (fine for sections 1-4
#                              and 7; profiles and instruction counts then name no function)
# Needs wrk, curl, python3, taskset (scripts/ci/tools.sh installs them); valgrind for sections 5
# and 9, perf for section 6 (Debian's valgrind and linux-perf); ghz and grpc-health-probe for
# section 7 (scripts/ci/grpc.sh builds them from their Go modules); openssl for section 9.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
RUNS=${RUNS:-50}
HOLD=${HOLD:-1000 10000}
SECTIONS=${SECTIONS:-1 1b 2 3 4 5 6 7 9}
GRPC_CONCURRENCY=${GRPC_CONCURRENCY:-50}
GRPC_CONNECTIONS=${GRPC_CONNECTIONS:-4}
GRPC_HOLD=${GRPC_HOLD:-1000}
CALLGRIND=${CALLGRIND:-1}
PROFILE=${PROFILE:-0}
OUT=${OUT:-target/bench}
SERVER_CPU=0
CLIENT_CPU=1
mkdir -p "$OUT"
results="$OUT/results.md"
: >"$results"

say() { printf '%s\n' "$*" | tee -a "$results"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
# want N: whether section N is in SECTIONS.
want() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
for tool in wrk curl python3 taskset; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/ci/tools.sh installs it)"
done

# The very code the tests and the image use: a static release build for the host, here with
# its symbol table kept (the image strips it) so profiles name functions. Its own target
# directory, so this does not undo the test build.
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
export CARGO_PROFILE_RELEASE_STRIP=false
build=target/bench-build
BEFORE=${BEFORE:-}
if [ -n "$BEFORE" ] && [ -f "$BEFORE" ]; then
  [ "$BEFORE" -ef "$OUT/rodent-before" ] || cp "$BEFORE" "$OUT/rodent-before"
elif [ -n "$BEFORE" ]; then
  # Built first: both builds write the same binary path, so the earlier one is copied aside.
  before_src="$OUT/before-src"
  rm -rf "$before_src"
  mkdir -p "$before_src"
  git archive "$BEFORE" | tar -x -C "$before_src"
  cargo build --release --locked --target "$host" --target-dir "$PWD/$build" \
    --manifest-path "$before_src/Cargo.toml" --bin rodent >&2
  cp "$build/$host/release/rodent" "$OUT/rodent-before"
  rm -rf "$before_src"
fi
BUILT=${BUILT:-}
if [ -z "$BUILT" ]; then
  cargo build --release --locked --target "$host" --target-dir "$build" --bin rodent \
    --example baseline --example typical --example grpc_baseline >&2
  BUILT="$build/$host/release"
fi
declare -A BIN=(
  [rodent]="$BUILT/rodent"
  [rodent-warn]="$BUILT/rodent"
  [baseline]="$BUILT/examples/baseline"
  [typical]="$BUILT/examples/typical"
  [grpc-baseline]="$BUILT/examples/grpc_baseline"
)
# What each variant adds to the environment.
declare -A ENV=(
  [rodent]=""
  [rodent-warn]="RODENT_LOG=warn"
  [baseline]=""
  [typical]=""
  [grpc-baseline]=""
)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PID=""
PORT=""
# http, or https for a server given RODENT_TLS_CERT (section 9); curl and wrk do not check the
# certificate, made here for the occasion.
SCHEME=http
# ready NAME: whether the server `start` started answers; the bare gRPC server has no /readyz
# and is asked through its health service.
ready() {
  if [ "$1" = grpc-baseline ]; then
    grpc-health-probe -addr="127.0.0.1:$PORT" >/dev/null 2>&1
  else
    curl -fsk -o /dev/null "$SCHEME://127.0.0.1:$PORT/readyz"
  fi
}
# start NAME [VAR=value...]: starts a server pinned to SERVER_CPU, waits until it is ready.
start() {
  local name=$1
  shift
  PORT=$(free_port)
  # No drain delay: nothing here is behind a load balancer, and stopping should not take 5 s.
  # ENV[$name] is unquoted on purpose: it holds zero or more VAR=value words.
  # shellcheck disable=SC2086
  env -i PATH="$PATH" RODENT_HOST=127.0.0.1 RODENT_PORT="$PORT" RODENT_PID_FILE= \
    RODENT_DRAIN_DELAY=0 ${ENV[$name]} "$@" \
    taskset -c "$SERVER_CPU" "${BIN[$name]}" >/dev/null 2>&1 &
  PID=$!
  local deadline=$((SECONDS + 10))
  until ready "$name"; do
    [ $SECONDS -lt $deadline ] || die "$name did not turn ready"
    sleep 0.01
  done
}
stop() {
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}
SINK=""
cleanup() {
  if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null || true; fi
  if [ -n "$SINK" ]; then kill "$SINK" 2>/dev/null || true; fi
}
trap cleanup EXIT

# wrk's figures in plain numbers: requests/s, p50 ms, p99 ms, requests, errors.
wrk_figures() {
  awk '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      return v
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    $1 == "Requests/sec:" { rps = $2 }
    $2 == "requests" && $3 == "in" { requests = $1 }
    /Non-2xx|Socket errors/ { errors = errors $0 " " }
    END { printf "%s %.3f %.3f %s %s\n", rps, p50, p99, requests, (errors == "" ? "-" : errors) }
  '
}

# CPU time (user + system) a process has used, in clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
TICK=$(getconf CLK_TCK)

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# measure FILE: against the server `start` left running, warms up (connections, allocator, CPU
# frequency), runs wrk into FILE, and sets RPS, P50, P99, ERRORS and CPU (server µs/request).
measure() {
  local before after requests
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "$SCHEME://127.0.0.1:$PORT/" >/dev/null
  before=$(cpu_ticks "$PID")
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency \
    "$SCHEME://127.0.0.1:$PORT/" >"$1"
  after=$(cpu_ticks "$PID")
  read -r RPS P50 P99 requests ERRORS < <(wrk_figures <"$1")
  CPU=$(awk -v t=$((after - before)) -v hz="$TICK" -v n="$requests" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
}

say "# rodent benchmarks"
say ""
say "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
say "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (modified)')"
say "- machine: $(lscpu | sed -n 's/^Model name: *//p' | sed -n 1p), $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB, kernel $(uname -r)"
say "- $(rustc -V), $(wrk -v 2>&1 | awk 'NR == 1 {print $1, $2}'), static release build for $host"
say "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
say ""

col() { awk -v c="$2" '{ print $c }' "$OUT/wrk-$1.tsv" | median; }
ratio() { awk -v r="$1" -v b="$2" 'BEGIN { printf "%.3f", r / b }'; }

# ---- 1. throughput and latency ----
if want 1; then
  say "## GET / — wrk -t1 -c$CONNECTIONS -d$DURATION --latency, server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU"
  say ""
  say "| round | server | requests/s | p50 ms | p99 ms | server CPU µs/request | errors |"
  say "| --- | --- | --- | --- | --- | --- | --- |"
  variants="rodent baseline rodent-warn typical"
  rm -f "$OUT"/wrk-*.tsv
  for round in $(seq 1 "$ROUNDS"); do
    order=$variants
    [ $((round % 2)) -eq 0 ] && order=$(echo "$variants" | tr ' ' '\n' | tac | tr '\n' ' ')
    for name in $order; do
      start "$name"
      measure "$OUT/wrk-$name-$round.txt"
      stop
      echo "$RPS $P50 $P99 $CPU" >>"$OUT/wrk-$name.tsv"
      say "| $round | $name | $RPS | $P50 | $P99 | $CPU | $ERRORS |"
    done
  done
  figures=("requests/s:1:≥ 0.85" "p50 ms:2:" "p99 ms:3:≤ 1.2" "server CPU µs/request:4:")
  say ""
  say "Medians over $ROUNDS rounds, against the bare axum baseline:"
  say ""
  say "| figure | rodent | baseline | rodent ÷ baseline | goal | rodent, RODENT_LOG=warn | ÷ baseline |"
  say "| --- | --- | --- | --- | --- | --- | --- |"
  for figure in "${figures[@]}"; do
    IFS=: read -r label c goal <<<"$figure"
    r=$(col rodent "$c"); b=$(col baseline "$c"); w=$(col rodent-warn "$c")
    say "| $label | $r | $b | $(ratio "$r" "$b") | $goal | $w | $(ratio "$w" "$b") |"
  done
  say ""
  say "The same medians against the typical axum service (examples/typical.rs):"
  say ""
  say "| figure | rodent | typical | rodent ÷ typical | rodent ÷ baseline | typical ÷ baseline | rodent, RODENT_LOG=warn ÷ typical |"
  say "| --- | --- | --- | --- | --- | --- | --- |"
  for figure in "${figures[@]}"; do
    IFS=: read -r label c _ <<<"$figure"
    r=$(col rodent "$c"); t=$(col typical "$c"); b=$(col baseline "$c"); w=$(col rodent-warn "$c")
    say "| $label | $r | $t | $(ratio "$r" "$t") | $(ratio "$r" "$b") | $(ratio "$t" "$b") | $(ratio "$w" "$t") |"
  done
  say ""
fi

# ---- 1b. trace export ----
# The same GET / with trace export on, to a local OTLP/HTTP sink (every request sampled), against
# rodent with no endpoint. Server CPU includes the export thread; the sink shares wrk's CPU.
cat >"$OUT/otlp_sink.py" <<'EOF'
# A local OTLP/HTTP sink: accepts POST /v1/traces, reads the body, answers 200.
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
EOF
if want 1b; then
  SINK_PORT=$(free_port)
  taskset -c "$CLIENT_CPU" python3 "$OUT/otlp_sink.py" "$SINK_PORT" &
  SINK=$!
  BIN[rodent-traced]=${BIN[rodent]}
  ENV[rodent-traced]="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT"
  say "## Trace export: GET / with every request traced to a local OTLP/HTTP sink"
  say ""
  say "| round | server | requests/s | p99 ms | server CPU µs/request | spans exported / dropped |"
  say "| --- | --- | --- | --- | --- | --- |"
  rm -f "$OUT"/trace-*.tsv
  for round in $(seq 1 "$ROUNDS"); do
    order="rodent rodent-traced"
    [ $((round % 2)) -eq 0 ] && order="rodent-traced rodent"
    for name in $order; do
      start "$name"
      measure "$OUT/trace-$name-$round.txt"
      spans=$(curl -fs "http://127.0.0.1:$PORT/metrics" |
        awk '/^rodent_spans_exported_total/ { e = $2 } /^rodent_spans_dropped_total/ { d = $2 } END { printf "%d / %d", e, d }')
      stop
      echo "$RPS $P99 $CPU" >>"$OUT/trace-$name.tsv"
      say "| $round | $name | $RPS | $P99 | $CPU | $spans |"
    done
  done
  kill "$SINK" 2>/dev/null || true
  SINK=""
  tcol() { awk -v c="$2" '{ print $c }' "$OUT/trace-$1.tsv" | median; }
  say ""
  say "Medians: requests/s $(tcol rodent-traced 1) traced against $(tcol rodent 1) untraced" \
    "($(ratio "$(tcol rodent-traced 1)" "$(tcol rodent 1)")×); server CPU per request" \
    "$(tcol rodent-traced 3) µs against $(tcol rodent 3) µs."
  say ""
fi

# ---- 2. memory ----
cat >"$OUT/hold.py" <<'EOF'
# Holds kept-alive connections, in steps: for each count given (ascending), opens connections
# until that many are open, each having served one `GET /` (so it is a kept-alive connection,
# not a half-open one), prints "held COUNT", and waits for a line on stdin before the next step.
# After the last it keeps them all open until stdin closes.
import socket, sys
port, counts = int(sys.argv[1]), [int(c) for c in sys.argv[2:]]
held = []
def open_one():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit(f"connection {len(held) + 1} closed before its response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(f"connection {len(held) + 1}: {head[:40]!r}")
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += s.recv(4096)
    held.append(s)
for step, count in enumerate(counts):
    while len(held) < count:
        open_one()
    print("held", count, flush=True)
    if step + 1 < len(counts):
        sys.stdin.readline()
sys.stdin.read()
EOF
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# established PORT: TCP connections established to PORT on this machine (the server's ends).
established() {
  awk -v port="$(printf '%04X' "$1")" '$4 == "01" && substr($2, index($2, ":") + 1) == port' \
    /proc/net/tcp /proc/net/tcp6 | wc -l
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
per() { awk -v d="$1" -v n="$2" 'BEGIN { printf "%.2f", d / n }'; }
if want 2; then
  read -ra holds <<<"$HOLD"
  first=${holds[0]}
  most=${holds[${#holds[@]} - 1]}
  # The client holds `most` sockets and so does each server (they inherit this limit).
  need=$((most + 1024))
  if [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || die "cannot raise the file-descriptor limit to $need (ulimit -n)"
  fi
  say "## Resident memory (VmRSS), idle and with kept-alive connections (file-descriptor limit $(ulimit -n))"
  say ""
  header="| server | idle"
  rule="| --- | ---"
  for n in "${holds[@]}"; do header="$header | $n connections"; rule="$rule | ---"; done
  header="$header | KiB per connection, idle → $most"
  rule="$rule | ---"
  if [ "$most" != "$first" ]; then
    header="$header | KiB per connection, $first → $most"
    rule="$rule | ---"
  fi
  say "$header | connections open at $most |"
  say "$rule | --- |"
  for name in rodent typical baseline; do
    # rodent closes a kept-alive connection idle for RODENT_IDLE_TIMEOUT (60 s by default):
    # longer here, so that none is closed while the client opens the rest on a busy machine.
    # The references have no idle timeout. rodent has no connection limit to raise.
    start "$name" RODENT_IDLE_TIMEOUT=10m
    curl -fs -o /dev/null "http://127.0.0.1:$PORT/"
    idle=$(rss_kib "$PID")
    fifo="$OUT/hold.fifo"
    rm -f "$fifo" && mkfifo "$fifo"
    : >"$OUT/hold.out"
    taskset -c "$CLIENT_CPU" python3 "$OUT/hold.py" "$PORT" "${holds[@]}" <"$fifo" >"$OUT/hold.out" &
    holder=$!
    exec 3>"$fifo"
    readings=()
    for n in "${holds[@]}"; do
      deadline=$((SECONDS + 30 + n / 100))
      until grep -qx "held $n" "$OUT/hold.out"; do
        kill -0 "$holder" 2>/dev/null || die "the client holding connections to $name failed"
        [ $SECONDS -lt $deadline ] || die "could not open $n connections to $name"
        sleep 0.05
      done
      readings+=("$(rss_kib "$PID")")
      open=$(established "$PORT")
      [ "$n" = "$most" ] || echo next >&3
    done
    exec 3>&-
    wait "$holder"
    stop
    rm -f "$fifo"
    echo "$idle ${readings[*]}" >"$OUT/rss-$name.txt"
    last=${readings[${#readings[@]} - 1]}
    per_conn=$(per $((last - idle)) "$most")
    echo "$per_conn" >"$OUT/rss-$name-per-connection.txt"
    row="| $name | $(mb "$idle")"
    for r in "${readings[@]}"; do row="$row | $(mb "$r")"; done
    row="$row | $per_conn"
    [ "$most" = "$first" ] || row="$row | $(per $((last - readings[0])) $((most - first)))"
    say "$row | $open |"
  done
  say ""
  per_rodent=$(cat "$OUT/rss-rodent-per-connection.txt")
  say "KiB per connection: the growth of VmRSS from idle (after one request) to $most held" \
    "connections, divided by $most. rodent ÷ baseline:" \
    "$(ratio "$per_rodent" "$(cat "$OUT/rss-baseline-per-connection.txt")"), rodent ÷ typical:" \
    "$(ratio "$per_rodent" "$(cat "$OUT/rss-typical-per-connection.txt")")." \
    "Connections open: established to the server's port at the last reading (/proc/net/tcp)."
  say ""
  say "Goals for rodent: ≤ 10 MB idle, ≤ 40 MB with 1,000 connections."
  say ""
fi

# ---- 3. start and stop ----
cat >"$OUT/lifecycle.py" <<'EOF'
# Times, over many runs, exec -> first /readyz 200 and SIGTERM -> exit (idle, no drain delay).
import os, signal, socket, statistics, subprocess, sys, time
binary, runs = sys.argv[1], int(sys.argv[2])
server_cpu, client_cpu = int(sys.argv[3]), int(sys.argv[4])
os.sched_setaffinity(0, {client_cpu})

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port

def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False

starts, stops = [], []
for _ in range(runs):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "RODENT_HOST": "127.0.0.1", "RODENT_PORT": str(port),
           "RODENT_PID_FILE": "", "RODENT_DRAIN_DELAY": "0"}
    t0 = time.perf_counter()
    p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=lambda: os.sched_setaffinity(0, {server_cpu}))
    while not ready(port):
        if time.perf_counter() - t0 > 10:
            p.kill(); sys.exit(f"{binary} never turned ready")
    t1 = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    code = p.wait()
    t2 = time.perf_counter()
    if code != 0:
        sys.exit(f"{binary} exited {code} on SIGTERM")
    starts.append((t1 - t0) * 1000)
    stops.append((t2 - t1) * 1000)

def q(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]

print(f"{statistics.median(starts):.1f} {q(starts, 0.9):.1f} {statistics.median(stops):.1f} {q(stops, 0.9):.1f}")
EOF
if want 3; then
  say "## Start and stop, $RUNS runs each (ms; median / p90)"
  say ""
  say "| server | exec → /readyz 200 | SIGTERM → exit (idle, no drain delay) |"
  say "| --- | --- | --- |"
  for name in rodent baseline; do
    read -r s50 s90 t50 t90 < <(python3 "$OUT/lifecycle.py" "${BIN[$name]}" "$RUNS" "$SERVER_CPU" "$CLIENT_CPU")
    echo "$s50 $s90 $t50 $t90" >"$OUT/lifecycle-$name.txt"
    say "| $name | $s50 / $s90 | $t50 / $t90 |"
  done
  say ""
  say "Goals for rodent: both ≤ 50 ms median."
  say ""
fi

# ---- 4. image size ----
if want 4; then
  say "## Container image"
  say ""
  if command -v docker >/dev/null && docker info >/dev/null 2>&1 &&
    image=$(docker images rodent --format '{{.Repository}}:{{.Tag}} {{.Size}} (created {{.CreatedSince}})' | sed -n 1p) &&
    [ -n "$image" ]; then
    say "- newest \`rodent\` image: $image (goal ≤ 10 MB)"
  else
    say "- no Docker engine or no \`rodent\` image here: the container tests (tests/container.rs) measure it"
  fi
  say ""
fi

# ---- 5. instructions per request ----
cat >"$OUT/requests.py" <<'EOF'
# Sends exactly N `GET /` requests over C kept-alive connections, one at a time; with `tls`,
# over TLS (the certificate not checked); with C = 0, each on a new connection.
import socket, ssl, sys
port, n, c = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tls = len(sys.argv) > 4 and sys.argv[4] == "tls"
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
def connect():
    s = socket.create_connection(("127.0.0.1", port))
    return context.wrap_socket(s, server_hostname="127.0.0.1") if tls else s
conns = [connect() for _ in range(c)]
for i in range(n):
    s = conns[i % c] if c else connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(body) < length:
        body += s.recv(65536)
    if not c:
        s.close()
EOF
if want 5 && [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null; then
  CG_REQUESTS=5000
  say "## User-space instructions per GET / (callgrind, $CG_REQUESTS requests on 4 connections after 500 to warm up)"
  say ""
  cg_variants="baseline typical rodent rodent-warn"
  if [ -n "$BEFORE" ]; then
    BIN[rodent-before]="$OUT/rodent-before"
    ENV[rodent-before]=""
    cg_variants="$cg_variants rodent-before"
  fi
  for name in $cg_variants; do
    PORT=$(free_port)
    rm -f "$OUT/callgrind-$name.out"*
    # shellcheck disable=SC2086
    env -i PATH="$PATH" RODENT_HOST=127.0.0.1 RODENT_PORT="$PORT" RODENT_PID_FILE= \
      RODENT_DRAIN_DELAY=0 ${ENV[$name]} \
      valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind-$name.out" "${BIN[$name]}" \
      >"$OUT/callgrind-$name.log" 2>&1 &
    PID=$!
    deadline=$((SECONDS + 60))
    until curl -fs -o /dev/null "http://127.0.0.1:$PORT/readyz"; do
      [ $SECONDS -lt $deadline ] || die "$name did not turn ready under valgrind"
      sleep 0.1
    done
    python3 "$OUT/requests.py" "$PORT" 500 4
    callgrind_control -z "$PID" >/dev/null
    python3 "$OUT/requests.py" "$PORT" "$CG_REQUESTS" 4
    callgrind_control -d "$PID" >/dev/null
    stop
    total=$(awk '/^summary:/ { print $2 }' "$OUT/callgrind-$name.out.1")
    echo $((total / CG_REQUESTS)) >"$OUT/callgrind-$name.txt"
    callgrind_annotate --inclusive=yes --threshold=100 "$OUT/callgrind-$name.out.1" 2>/dev/null |
      sed -n '/file:function/,$p' | sed 's/ \[\/.*//' | sed -n '3,$p' |
      awk -v n="$CG_REQUESTS" '{ c = $1; gsub(",", "", c); sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, ""); printf "%8d  %s\n", c / n, $0 }' \
        >"$OUT/callgrind-$name-inclusive.txt"
  done
  say "| server | instructions/request | ÷ baseline | ÷ typical |"
  say "| --- | --- | --- | --- |"
  for name in $cg_variants; do
    n=$(cat "$OUT/callgrind-$name.txt")
    say "| $name | $n | $(ratio "$n" "$(cat "$OUT/callgrind-baseline.txt")") | $(ratio "$n" "$(cat "$OUT/callgrind-typical.txt")") |"
  done
  say ""
  say "rodent: instructions per request inside (inclusive)"
  say ""
  say '```'
  grep -E 'fmt_layer::Layer<S,N,E,W> as tracing_subscriber::layer::Layer<S>>::on_(event|record|new_span)$|Uuid>::new_v4$|Metrics::observe_request$|catch_panic::ResponseFuture<F,T> as core::future::future::Future>::poll$|timeout::Timeout<T> as core::future::future::Future>::poll$|ConnectionService as hyper::service::service::Service' \
    "$OUT/callgrind-rodent-inclusive.txt" | cut -c1-160 | tee -a "$results" || true
  say '```'
  say ""
fi

# ---- 6. profile ----
if want 6 && [ "$PROFILE" = 1 ]; then
  say "## Profiles under wrk -c$CONNECTIONS (perf -F 499, DWARF call graphs)"
  say ""
  if command -v perf >/dev/null && perf record -q -o "$OUT/perf.check" true >/dev/null 2>&1; then
    for name in rodent baseline; do
      start "$name"
      taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$PORT/" >/dev/null
      perf record -q -F 499 --call-graph dwarf,16384 -o "$OUT/perf-$name.data" -p "$PID" -- \
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d5s "http://127.0.0.1:$PORT/" >/dev/null 2>&1
      stop
      perf report -i "$OUT/perf-$name.data" --stdio --no-children --sort symbol -g none 2>/dev/null |
        awk '/^ +[0-9]/ { sub(/[ \t]+-[ \t]+-[ \t]*$/, ""); sub(/[ \t]+$/, ""); print }' | sed -n 1,40p >"$OUT/perf-$name-self.txt"
      perf report -i "$OUT/perf-$name.data" --stdio --children --sort symbol -g none 2>/dev/null |
        awk '/^ +[0-9]/ { sub(/[ \t]+-[ \t]+-[ \t]*$/, ""); sub(/[ \t]+$/, ""); print }' >"$OUT/perf-$name-inclusive.txt"
      say "$name, top symbols by self time:"
      say ""
      say '```'
      sed -n 1,20p "$OUT/perf-$name-self.txt" | cut -c1-160 | tee -a "$results"
      say '```'
      say ""
    done
    say "rodent, time spent in (inclusive) request logging, the request span, request ids and metrics:"
    say ""
    say '```'
    grep -E 'Layer<S>>::on_event$|Span::record_all$|Span::new$|Uuid>::new_v4$|Metrics::observe_request$|Tracked as tokio::io::async_read::AsyncRead>::poll_read$' \
      "$OUT/perf-rodent-inclusive.txt" | awk '!seen[$NF]++' | cut -c1-160 | tee -a "$results" || true
    say '```'
  else
    say "(perf cannot record here)"
  fi
  say ""
fi

# ---- 7. gRPC ----
# 7a: unary Echo calls over h2c with ghz, rodent (its whole stack: the gRPC deadline, shedding,
# the access log to /dev/null) against tonic's own server with the same service; alternating
# rounds, ghz pinned to the client CPU. 7b: idle gRPC connections held by a client that speaks
# HTTP/2 itself (one Echo call on each, then nothing), and resident memory before and after.
cat >"$OUT/grpc_hold.py" <<'EOF'
# Holds N idle gRPC connections (h2c) to 127.0.0.1:PORT, each having made one unary
# rodent.echo.v1.Echo/Echo call answered OK; prints "held N" and keeps them until stdin closes.
# HTTP/2 by hand (frames and literal HPACK headers): enough for one call, and no dependency.
import socket, struct, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
def literal(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
headers = b"".join(literal(n, v) for n, v in [
    (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/rodent.echo.v1.Echo/Echo"),
    (b":authority", b"bench"), (b"content-type", b"application/grpc"), (b"te", b"trailers")])
message = b"\x0a\x05hello"
call = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0) + frame(1, 4, 1, headers)
        + frame(0, 1, 1, b"\x00" + struct.pack(">I", len(message)) + message))
held = []
def read_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            sys.exit(f"connection {len(held) + 1} closed during its call")
        data += chunk
    return data
while len(held) < count:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(call)
    while True:
        head = read_exactly(s, 9)
        length = int.from_bytes(head[:3], "big")
        kind, flags, stream = head[3], head[4], int.from_bytes(head[5:], "big") & 0x7FFFFFFF
        payload = read_exactly(s, length)
        if kind == 4 and not flags & 1:
            s.sendall(frame(4, 1, 0))
        elif kind == 6 and not flags & 1:
            s.sendall(frame(6, 1, 0, payload))
        elif kind == 7:
            sys.exit(f"connection {len(held) + 1}: GOAWAY")
        elif kind == 1 and stream == 1 and flags & 1:
            break
    held.append(s)
print("held", count, flush=True)
sys.stdin.read()
EOF
if want 7; then
  for tool in ghz grpc-health-probe; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/ci/grpc.sh builds it)"
  done
  ghz_run() {
    taskset -c "$CLIENT_CPU" ghz --insecure --proto proto/rodent/echo/v1/echo.proto \
      --call rodent.echo.v1.Echo.Echo -d '{"message":"hello"}' -c "$GRPC_CONCURRENCY" \
      --connections "$GRPC_CONNECTIONS" -z "$1" -O json "127.0.0.1:$PORT"
  }
  # calls/s, p50 ms, p99 ms, calls, calls not OK.
  ghz_figures() {
    python3 -c '
import json, sys
d = json.load(sys.stdin)
lat = {l["percentage"]: l["latency"] / 1e6 for l in d.get("latencyDistribution") or []}
ok = (d.get("statusCodeDistribution") or {}).get("OK", 0)
print("%.0f %.3f %.3f %d %d" % (d["rps"], lat.get(50, 0), lat.get(99, 0), d["count"], d["count"] - ok))'
  }
  say "## gRPC: unary Echo calls — ghz -c$GRPC_CONCURRENCY --connections $GRPC_CONNECTIONS -z$DURATION, h2c, server on CPU $SERVER_CPU, ghz on CPU $CLIENT_CPU"
  say ""
  say "| round | server | calls/s | p50 ms | p99 ms | server CPU µs/call | not OK |"
  say "| --- | --- | --- | --- | --- | --- | --- |"
  rm -f "$OUT"/ghz-*.tsv
  for round in $(seq 1 "$ROUNDS"); do
    order="rodent grpc-baseline"
    [ $((round % 2)) -eq 0 ] && order="grpc-baseline rodent"
    for name in $order; do
      start "$name"
      ghz_run 2s >/dev/null
      before=$(cpu_ticks "$PID")
      ghz_run "$DURATION" >"$OUT/ghz-$name-$round.json"
      after=$(cpu_ticks "$PID")
      stop
      read -r rps p50 p99 calls bad < <(ghz_figures <"$OUT/ghz-$name-$round.json")
      cpu=$(awk -v t=$((after - before)) -v hz="$TICK" -v n="$calls" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
      echo "$rps $p50 $p99 $cpu" >>"$OUT/ghz-$name.tsv"
      say "| $round | $name | $rps | $p50 | $p99 | $cpu | $bad |"
    done
  done
  gcol() { awk -v c="$2" '{ print $c }' "$OUT/ghz-$1.tsv" | median; }
  say ""
  say "Medians over $ROUNDS rounds:"
  say ""
  say "| figure | rodent | bare tonic | rodent ÷ bare tonic |"
  say "| --- | --- | --- | --- |"
  for figure in "calls/s:1" "p50 ms:2" "p99 ms:3" "server CPU µs/call:4"; do
    IFS=: read -r label c <<<"$figure"
    r=$(gcol rodent "$c"); b=$(gcol grpc-baseline "$c")
    say "| $label | $r | $b | $(ratio "$r" "$b") |"
  done
  say ""

  need=$((GRPC_HOLD + 1024))
  if [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || die "cannot raise the file-descriptor limit to $need (ulimit -n)"
  fi
  say "## Resident memory (VmRSS) with $GRPC_HOLD idle gRPC connections (h2c, one Echo call each)"
  say ""
  say "| server | idle, after a second of calls | $GRPC_HOLD idle gRPC connections | KiB per idle gRPC connection | connections open |"
  say "| --- | --- | --- | --- | --- |"
  for name in rodent grpc-baseline; do
    start "$name" RODENT_IDLE_TIMEOUT=10m
    ghz_run 1s >/dev/null
    idle=$(rss_kib "$PID")
    fifo="$OUT/grpc-hold.fifo"
    rm -f "$fifo" && mkfifo "$fifo"
    : >"$OUT/grpc-hold.out"
    taskset -c "$CLIENT_CPU" python3 "$OUT/grpc_hold.py" "$PORT" "$GRPC_HOLD" <"$fifo" >"$OUT/grpc-hold.out" &
    holder=$!
    exec 3>"$fifo"
    deadline=$((SECONDS + 30 + GRPC_HOLD / 100))
    until grep -qx "held $GRPC_HOLD" "$OUT/grpc-hold.out"; do
      kill -0 "$holder" 2>/dev/null || die "the client holding gRPC connections to $name failed"
      [ $SECONDS -lt $deadline ] || die "could not open $GRPC_HOLD gRPC connections to $name"
      sleep 0.05
    done
    held=$(rss_kib "$PID")
    open=$(established "$PORT")
    exec 3>&-
    wait "$holder"
    stop
    rm -f "$fifo"
    per_conn=$(per $((held - idle)) "$GRPC_HOLD")
    echo "$per_conn" >"$OUT/grpc-rss-$name-per-connection.txt"
    say "| $name | $(mb "$idle") | $(mb "$held") | $per_conn | $open |"
  done
  say ""
  say "KiB per idle gRPC connection: the growth of VmRSS from idle (after a second of calls) to" \
    "$GRPC_HOLD held connections, divided by $GRPC_HOLD. rodent ÷ bare tonic:" \
    "$(ratio "$(cat "$OUT/grpc-rss-rodent-per-connection.txt")" "$(cat "$OUT/grpc-rss-grpc-baseline-per-connection.txt")")."
  say ""
fi

if want 8; then
  say "## 8. Kubernetes: drains, rollouts and scale-downs under load, three nodes"
  say ""
  scripts/kube status >/dev/null || die "section 8 needs the cluster: scripts/kube up"
  started=$SECONDS
  # shellcheck disable=SC2065 # a command named test, not the test builtin
  scripts/test --test kubernetes -- --nocapture >"$OUT/kubernetes.log" 2>&1 ||
    say "(some tests failed: see $OUT/kubernetes.log)"
  say "- the suite: $((SECONDS - started)) s wall, $(grep -o '[0-9]* passed; [0-9]* failed' "$OUT/kubernetes.log" | tail -1)"
  say "- \`scripts/kube up\` took $(cat /run/rodent-kube/start-seconds 2>/dev/null || echo '?') s"
  say ""
  say '```'
  # Each scenario's figure line and the indented notes under it.
  awk '/^figure: [a-z]/ { on = 1; print; next } on && /^  / { print; next } { on = 0 }' \
    "$OUT/kubernetes.log" | tee -a "$results"
  say '```'
  say ""
fi

# ---- 9. what HTTPS costs ----
# The same rodent (default stack, access log on) over TLS and over plain HTTP, alternating.
# The certificate: ECDSA P-256, made here (cert-manager's default is RSA 2048, whose handshake
# signs more slowly; a kept-alive connection's requests do not depend on it).
if want 9; then
  command -v openssl >/dev/null || die "openssl is missing (section 9 makes its certificate with it)"
  tls_dir="$OUT/tls"
  mkdir -p "$tls_dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$tls_dir/tls.key" -out "$tls_dir/tls.crt" 2>/dev/null
  BIN[rodent-tls]=${BIN[rodent]}
  ENV[rodent-tls]="RODENT_TLS_CERT=$tls_dir/tls.crt RODENT_TLS_KEY=$tls_dir/tls.key"
  scheme_of() { case $1 in *-tls) echo https ;; *) echo http ;; esac; }
  say "## HTTPS against plain HTTP: GET /, wrk -t1 -c$CONNECTIONS -d$DURATION, kept-alive connections"
  say ""
  say "| round | server | requests/s | p50 ms | p99 ms | server CPU µs/request | errors |"
  say "| --- | --- | --- | --- | --- | --- | --- |"
  rm -f "$OUT"/tls-wrk-*.tsv
  for round in $(seq 1 "$ROUNDS"); do
    order="rodent rodent-tls"
    [ $((round % 2)) -eq 0 ] && order="rodent-tls rodent"
    for name in $order; do
      SCHEME=$(scheme_of "$name")
      start "$name"
      measure "$OUT/tls-wrk-$name-$round.txt"
      stop
      echo "$RPS $P50 $P99 $CPU" >>"$OUT/tls-wrk-$name.tsv"
      say "| $round | $name | $RPS | $P50 | $P99 | $CPU | $ERRORS |"
    done
  done
  SCHEME=http
  tlscol() { awk -v c="$2" '{ print $c }' "$OUT/tls-wrk-$1.tsv" | median; }
  say ""
  say "Medians over $ROUNDS rounds:"
  say ""
  say "| figure | HTTPS | HTTP | HTTPS ÷ HTTP |"
  say "| --- | --- | --- | --- |"
  for figure in "requests/s:1" "p50 ms:2" "p99 ms:3" "server CPU µs/request:4"; do
    IFS=: read -r label c <<<"$figure"
    t=$(tlscol rodent-tls "$c"); h=$(tlscol rodent "$c")
    say "| $label | $t | $h | $(ratio "$t" "$h") |"
  done
  say ""
  if [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null; then
    TLS_REQUESTS=5000
    TLS_HANDSHAKES=500
    say "### User-space instructions per GET / over HTTPS and HTTP (callgrind)"
    say ""
    say "| server | kept alive ($TLS_REQUESTS requests on 4 connections) | a new connection each ($TLS_HANDSHAKES requests) |"
    say "| --- | --- | --- |"
    for name in rodent rodent-tls; do
      mode=""
      [ "$(scheme_of "$name")" = https ] && mode=tls
      row="| $name"
      for run in "4 $TLS_REQUESTS" "0 $TLS_HANDSHAKES"; do
        read -r conns requests <<<"$run"
        PORT=$(free_port)
        out="$OUT/callgrind-$name-c$conns.out"
        rm -f "$out"*
        # shellcheck disable=SC2086
        env -i PATH="$PATH" RODENT_HOST=127.0.0.1 RODENT_PORT="$PORT" RODENT_PID_FILE= \
          RODENT_DRAIN_DELAY=0 ${ENV[$name]} \
          valgrind --tool=callgrind --callgrind-out-file="$out" "${BIN[$name]}" \
          >"$OUT/callgrind-$name-c$conns.log" 2>&1 &
        PID=$!
        deadline=$((SECONDS + 60))
        until curl -fsk -o /dev/null "$(scheme_of "$name")://127.0.0.1:$PORT/readyz"; do
          [ $SECONDS -lt $deadline ] || die "$name did not turn ready under valgrind"
          sleep 0.1
        done
        python3 "$OUT/requests.py" "$PORT" 200 "$conns" $mode
        callgrind_control -z "$PID" >/dev/null
        python3 "$OUT/requests.py" "$PORT" "$requests" "$conns" $mode
        callgrind_control -d "$PID" >/dev/null
        stop
        total=$(awk '/^summary:/ { print $2 }' "$out.1")
        echo $((total / requests)) >"$OUT/callgrind-$name-c$conns.txt"
        row="$row | $((total / requests))"
      done
      say "$row |"
    done
    kept=$(( $(cat "$OUT/callgrind-rodent-tls-c4.txt") - $(cat "$OUT/callgrind-rodent-c4.txt") ))
    fresh=$(( $(cat "$OUT/callgrind-rodent-tls-c0.txt") - $(cat "$OUT/callgrind-rodent-c0.txt") ))
    say ""
    say "TLS adds $kept instructions to a request on a kept-alive connection, and $fresh to one" \
      "that opens its connection (the handshake: key exchange, the certificate's signature)."
    say ""
  fi
fi

say "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '\nwritten to %s\n' "$results" >&2
