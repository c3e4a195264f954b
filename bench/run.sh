#!/usr/bin/env bash
# bench/run.sh — Tessera's token endpoint against node-oidc-provider, side by side, one command:
#
#     bench/run.sh                       # cc-basic, concurrency 16 and 64, 10 s per run
#     bench/run.sh --quick               # 3 s runs (smoke test)
#     bench/run.sh --scenario all        # every scenario (see below)
#
# Options:
#   --duration S      seconds per measured run (default 10; a warm-up of ~S/3 precedes each)
#   --quick           3 s runs, 1 s warm-ups
#   --scenario NAME   cc-basic (default) | cc-private-key-jwt | jwt-bearer | all
#   --concurrency "16 64"   connection counts to measure (default "16 64")
#   --no-build        use the existing release binaries (target/release/tessera, bench/loadgen)
#
# Environment: BENCH_TESSERA_BIN=PATH benchmarks that binary instead of target/release/tessera
# (with --no-build: e.g. a copy taken while others keep rebuilding the tree);
# BENCH_ASSERTION_RATE (default 15000) sizes the pre-signed assertion pool per second of load.
#
# What it does:
#   1. builds Tessera (`cargo build --release -p tessera`) and, for the assertion scenarios,
#      the standalone load generator in bench/loadgen; installs the peer (npm `oidc-provider`
#      from bench/package-lock.json into bench/node_modules) and `wrk` (Debian package, via
#      apt-get when missing);
#   2. starts both servers on free 127.0.0.1 ports, BOTH pinned to CPU 0 (`taskset -c 0`);
#      the load generator (wrk or bench/loadgen) is pinned to CPU 1. Tessera runs with
#      TESSERA_LOG=warn (no per-request logging either way) and gets a temporary
#      data directory (embedded SQLite) and a config issuing ES256 JWT access tokens;
#      bench/peer/server.mjs configures node-oidc-provider the same way;
#   3. for each scenario, concurrency and server: a warm-up run, then the measured run;
#      any non-2xx response fails the whole run (a sample response is printed; the other
#      runs still complete so the report is whole, and the exit status is 1);
#   4. records idle RSS (after start) and peak RSS (VmHWM) of both servers and, for every
#      measured run, the CPU time the server used (all its threads) — requests per CPU second is
#      the figure other load on a shared machine disturbs least; prints a table with the
#      Tessera/peer ratios of both and writes bench/results/latest.json.
#
# Scenarios:
#   cc-basic            client_credentials + client_secret_basic (wrk, bench/wrk/client_credentials.lua)
#   cc-private-key-jwt  client_credentials + private_key_jwt, ES256, a fresh jti per request
#                       (bench/loadgen pre-signs the assertions, then replays each once)
#   jwt-bearer          RFC 7523 jwt-bearer grant, Tessera only (the peer has no equivalent);
#                       skipped when Tessera's discovery document does not list the grant
#
# Requirements: cargo, node >= 20.19 with npm, taskset (util-linux), curl; 2+ CPUs.
# The servers and every request stay on 127.0.0.1; everything started is stopped on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=10
WARMUP=""
SCENARIO=cc-basic
CONCURRENCY="16 64"
BUILD=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --quick) DURATION=3; WARMUP=1; shift ;;
    --scenario) SCENARIO=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 ]] || { echo "run.sh: --duration takes whole seconds" >&2; exit 2; }
[[ -n "$WARMUP" ]] || WARMUP=$(( DURATION / 3 > 2 ? DURATION / 3 : 2 ))
case "$SCENARIO" in
  cc-basic) SCENARIOS=(cc-basic) ;;
  cc-private-key-jwt) SCENARIOS=(cc-private-key-jwt) ;;
  jwt-bearer) SCENARIOS=(jwt-bearer) ;;
  all) SCENARIOS=(cc-basic cc-private-key-jwt jwt-bearer) ;;
  *) echo "run.sh: unknown scenario $SCENARIO" >&2; exit 2 ;;
esac
needs_loadgen() { [[ " ${SCENARIOS[*]} " != " cc-basic " ]]; }

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs: the servers share CPU 0, the load generator uses CPU 1"
for tool in cargo node npm taskset curl; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian package)"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi

# ---------------------------------------------------------------- build and install
TESSERA_BIN=${BENCH_TESSERA_BIN:-$ROOT/target/release/tessera}
LOADGEN_BIN="$BENCH_DIR/loadgen/target/release/tessera-loadgen"
if [[ $BUILD -eq 1 ]]; then
  log "building Tessera (release)"
  (cd "$ROOT" && cargo build --release --locked -p tessera)
  if needs_loadgen; then
    log "building the load generator (bench/loadgen)"
    cargo build --release --locked --manifest-path "$BENCH_DIR/loadgen/Cargo.toml"
  fi
fi
[[ -x "$TESSERA_BIN" ]] || die "no Tessera binary at target/release/tessera"
if needs_loadgen; then [[ -x "$LOADGEN_BIN" ]] || die "no load generator binary (build bench/loadgen)"; fi
if [[ ! -d "$BENCH_DIR/node_modules/oidc-provider" || "$BENCH_DIR/package-lock.json" -nt "$BENCH_DIR/node_modules/.package-lock.json" ]]; then
  log "installing the peer (npm ci: oidc-provider)"
  (cd "$BENCH_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

# ---------------------------------------------------------------- scratch space and cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
# json FILE EXPR: evaluate a JS expression over the parsed JSON file (bound to `j`).
json() { node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); const v=('"$2"'); console.log(typeof v==="object"?JSON.stringify(v):v)' "$1"; }
# CPU seconds used so far by every thread of a process (scheduler statistics, ns precision).
cpu_s() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ns += $1} END {printf "%.6f", ns / 1e9}'; }
server_pid() { [[ $1 == tessera ]] && echo "$T_PID" || echo "$P_PID"; }
rss_kib() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }
wait_http() { # URL PID LOGFILE
  local i
  for i in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "server exited during start-up"; }
    sleep 0.1
  done
  cat "$3" >&2; die "server did not answer $1"
}

SCOPE=api
# Pre-signed assertions per second of load (the single-core crypto bound of
# private_key_jwt + ES256 access token is ~15 k/s; see docs/benchmarks.md).
ASSERTION_RATE=${BENCH_ASSERTION_RATE:-15000}
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

# ---------------------------------------------------------------- Tessera
T_PORT=$(free_port)
T_ISSUER="http://127.0.0.1:$T_PORT"
T_DATA="$WORK/tessera-data"
mkdir -p "$T_DATA"
cat >"$WORK/tessera.toml" <<EOF
# Written by bench/run.sh: production defaults except what the comparison needs.
listen = "127.0.0.1:$T_PORT"

[tokens]
access_token_alg = "ES256"    # the default; stated because the peer is set to ES256 too
access_token_ttl = 3600       # the peer's lifetime below

[oauth]
scopes_supported = ["openid", "$SCOPE"]
EOF
tessera() { "$TESSERA_BIN" --config "$WORK/tessera.toml" --data-dir "$T_DATA" "$@"; }

log "Tessera: registering the client_secret_basic client"
tessera client add bench-basic --grant client_credentials --auth-method client_secret_basic \
  --scope "$SCOPE" --json >"$WORK/tessera-basic.json" 2>"$WORK/tessera-cli.log" \
  || { cat "$WORK/tessera-cli.log" >&2; die "tessera client add failed"; }
SECRET=$(json "$WORK/tessera-basic.json" 'j.client_secret ?? ""')
[[ -n "$SECRET" ]] || { cat "$WORK/tessera-basic.json" >&2; die "no client_secret in 'tessera client add --json' output"; }
BASIC="Basic $(printf '%s' "bench-basic:$SECRET" | base64 -w0)"

if needs_loadgen; then
  "$LOADGEN_BIN" keygen --kid bench-pkjwt-es256 --key "$WORK/pkjwt-key.json" --jwks "$WORK/pkjwt-jwks.json"
  log "Tessera: registering the private_key_jwt client"
  tessera client add bench-pkjwt --grant client_credentials --auth-method private_key_jwt \
    --jwks-file "$WORK/pkjwt-jwks.json" --scope "$SCOPE" --json >"$WORK/tessera-pkjwt.json" 2>>"$WORK/tessera-cli.log" \
    || { cat "$WORK/tessera-cli.log" >&2; die "tessera client add (private_key_jwt) failed"; }
fi

log "starting Tessera on $T_ISSUER (CPU 0)"
TESSERA_LOG=warn taskset -c 0 "$TESSERA_BIN" --config "$WORK/tessera.toml" --data-dir "$T_DATA" serve >"$WORK/tessera.log" 2>&1 &
T_PID=$!
PIDS+=("$T_PID")
wait_http "$T_ISSUER/.well-known/openid-configuration" "$T_PID" "$WORK/tessera.log"

# ---------------------------------------------------------------- the peer
P_PORT=$(free_port)
P_ISSUER="http://127.0.0.1:$P_PORT"
log "starting node-oidc-provider $(json "$BENCH_DIR/node_modules/oidc-provider/package.json" j.version) on $P_ISSUER (CPU 0)"
PEER_ENV=(NODE_ENV=production PEER_PORT="$P_PORT" PEER_CLIENT_ID=bench-basic PEER_CLIENT_SECRET="$SECRET" PEER_SCOPE="$SCOPE")
if needs_loadgen; then PEER_ENV+=(PEER_PKJWT_CLIENT_ID=bench-pkjwt PEER_PKJWT_JWKS="$WORK/pkjwt-jwks.json"); fi
env "${PEER_ENV[@]}" taskset -c 0 node "$BENCH_DIR/peer/server.mjs" >"$WORK/peer.log" 2>&1 &
P_PID=$!
PIDS+=("$P_PID")
wait_http "$P_ISSUER/.well-known/openid-configuration" "$P_PID" "$WORK/peer.log"

sleep 2
T_IDLE=$(rss_kib "$T_PID" VmRSS)
P_IDLE=$(rss_kib "$P_PID" VmRSS)
log "idle RSS: Tessera $((T_IDLE / 1024)) MiB, peer $((P_IDLE / 1024)) MiB"

# One request each through curl: both must issue a JWT access token before any load.
check_token() { # NAME URL -> prints the response, fails unless 200 with a JWT access_token
  local out="$WORK/check-$1.json" code
  code=$(curl -sS -o "$out" -w '%{http_code}' -H "Authorization: $BASIC" \
    -d grant_type=client_credentials -d "scope=$SCOPE" "$2")
  [[ "$code" == 200 ]] && [[ $(json "$out" '(j.access_token||"").split(".").length') == 3 ]] \
    || { echo "HTTP $code: $(cat "$out")" >&2; die "$1 did not issue a JWT access token"; }
  log "$1 token check: HTTP 200, JWT header $(json "$out" 'Buffer.from(j.access_token.split(".")[0],"base64url").toString()')"
}
check_token tessera "$T_ISSUER/token"
check_token peer "$P_ISSUER/token"

# ---------------------------------------------------------------- measurement
# wrk's latency figures carry units (us, ms, s); normalise to milliseconds.
wrk_run() { # SCENARIO SERVER URL CONCURRENCY
  local scenario=$1 server=$2 url=$3 c=$4 out="$WORK/wrk-$2-$4.txt"
  taskset -c 1 wrk -t2 -c"$c" -d"${WARMUP}s" -s "$BENCH_DIR/wrk/client_credentials.lua" "$url" -- "$BASIC" "$SCOPE" >/dev/null
  local pid cpu0 cpu1
  pid=$(server_pid "$server")
  cpu0=$(cpu_s "$pid")
  taskset -c 1 wrk -t2 -c"$c" -d"${DURATION}s" --latency -s "$BENCH_DIR/wrk/client_credentials.lua" "$url" -- "$BASIC" "$SCOPE" >"$out"
  cpu1=$(cpu_s "$pid")
  awk -v scenario="$scenario" -v server="$server" -v c="$c" -v cpu="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {print b - a}')" '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
      return v + 0
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "90%" { p90 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /requests in/ { requests = $1; secs = $4; sub(/s,$/, "", secs) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { errors = $4 + $6 + $8 + $10; gsub(/,/, "", errors) }
    END {
      printf "{\"scenario\":\"%s\",\"server\":\"%s\",\"concurrency\":%d,\"tool\":\"wrk\",\"requests\":%d,\"seconds\":%s,\"rps\":%s,\"p50_ms\":%s,\"p90_ms\":%s,\"p99_ms\":%s,\"non2xx\":%d,\"errors\":%d,\"server_cpu_s\":%s,\"server_cpu_share\":%s,\"rps_per_server_cpu\":%s}\n",
        scenario, server, c, requests, secs + 0, rps + 0, p50 + 0, p90 + 0, p99 + 0, non2xx + 0, errors + 0,
        cpu + 0, (secs > 0 ? cpu / secs : 0), (cpu > 0 ? requests / cpu : 0)
    }' "$out" >>"$RESULTS"
  local last non2xx
  last=$(tail -n1 "$RESULTS")
  non2xx=$(node -e 'console.log(JSON.parse(process.argv[1]).non2xx)' "$last")
  printf '    %-8s c=%-3s %s\n' "$server" "$c" "$(node -e 'const r=JSON.parse(process.argv[1]); console.log(`${r.rps.toFixed(0)} req/s  p50 ${r.p50_ms} ms  p99 ${r.p99_ms} ms  non-2xx ${r.non2xx}  socket errors ${r.errors}  server CPU ${r.server_cpu_share.toFixed(2)} → ${r.rps_per_server_cpu.toFixed(0)} req per CPU-s`)' "$last")" >&2
  if [[ "$non2xx" != 0 ]]; then
    # Replay the same load briefly with a script that prints the first non-2xx response.
    echo "    sample of the non-2xx responses ($server, c=$c):" >&2
    taskset -c 1 wrk -t1 -c"$c" -d2s -s "$BENCH_DIR/wrk/capture_non2xx.lua" "$url" -- "$BASIC" "$SCOPE" \
      | sed -n '/^non-2xx sample/,/^  Thread Stats/p' | sed '$d; s/^/      /' >&2 || true
    FAILURES+=("$server answered $non2xx non-2xx responses under load ($scenario, c=$c)")
  fi
}

loadgen_run() { # SCENARIO SERVER URL CONCURRENCY MODE AUD [extra loadgen flags…]
  local scenario=$1 server=$2 url=$3 c=$4 mode=$5 aud=$6 out="$WORK/loadgen-$1-$2-$4.json" rc=0
  shift 6
  # Warm-up and measurement are one loadgen run: it discards the first WARMUP seconds.
  # Enough assertions for ASSERTION_RATE req/s over warm-up + run; raise it if they run out.
  # Unpinned while it pre-signs (on every CPU: the servers are idle then), then it pins itself
  # to CPU 1 before the first request.
  "$LOADGEN_BIN" run --url "$url" --mode "$mode" --aud "$aud" --concurrency "$c" \
    --duration "$DURATION" --warmup "$WARMUP" --scope "$SCOPE" --json "$out" \
    --pin-cpu 1 --server-pid "$(server_pid "$server")" \
    --assertions $(( ASSERTION_RATE * (DURATION + WARMUP) )) "$@" >/dev/null || rc=$?
  [[ -s "$out" ]] || die "load generator failed ($scenario, $server, c=$c)"
  node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); Object.assign(r,{scenario:process.argv[2],server:process.argv[3]}); console.log(JSON.stringify(r))' \
    "$out" "$scenario" "$server" >>"$RESULTS"
  printf '    %-8s c=%-3s %s\n' "$server" "$c" "$(json "$out" '`${j.rps.toFixed(0)} req/s  p50 ${j.p50_ms} ms  p99 ${j.p99_ms} ms  non-2xx ${j.non2xx}  errors ${j.errors}  server CPU ${(j.server_cpu_share??0).toFixed(2)} → ${(j.rps_per_server_cpu??0).toFixed(0)} req per CPU-s`')" >&2
  case $rc in
    0) ;;
    3) FAILURES+=("the load generator ran out of pre-signed assertions ($scenario, $server, c=$c)") ;;
    *) echo "    sample non-2xx response: HTTP $(json "$out" j.sample_status) $(json "$out" j.sample_body)" >&2
       FAILURES+=("$server answered $(json "$out" j.non2xx) non-2xx responses under load ($scenario, c=$c)") ;;
  esac
}

SKIPPED=()
FAILURES=()
for scenario in "${SCENARIOS[@]}"; do
  case "$scenario" in
    cc-basic)
      log "scenario cc-basic: client_credentials + client_secret_basic, ES256 JWT access token (wrk, ${WARMUP} s warm-up + ${DURATION} s)"
      for c in $CONCURRENCY; do
        wrk_run cc-basic tessera "$T_ISSUER/token" "$c"
        wrk_run cc-basic peer "$P_ISSUER/token" "$c"
      done ;;
    cc-private-key-jwt)
      log "scenario cc-private-key-jwt: client_credentials + private_key_jwt (ES256, fresh jti), ES256 JWT access token (loadgen)"
      for c in $CONCURRENCY; do
        loadgen_run cc-private-key-jwt tessera "$T_ISSUER/token" "$c" client-assertion "$T_ISSUER" \
          --client-id bench-pkjwt --key "$WORK/pkjwt-key.json"
        loadgen_run cc-private-key-jwt peer "$P_ISSUER/token" "$c" client-assertion "$P_ISSUER" \
          --client-id bench-pkjwt --key "$WORK/pkjwt-key.json"
      done ;;
    jwt-bearer)
      if ! curl -fsS "$T_ISSUER/.well-known/openid-configuration" \
          | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.exit((JSON.parse(s).grant_types_supported||[]).includes("urn:ietf:params:oauth:grant-type:jwt-bearer")?0:1))'; then
        log "scenario jwt-bearer: skipped (Tessera's discovery document does not list the jwt-bearer grant)"
        SKIPPED+=(jwt-bearer)
        continue
      fi
      if ! "$TESSERA_BIN" service-account --help >/dev/null 2>&1; then
        log "scenario jwt-bearer: skipped (this build has no 'tessera service-account' command yet)"
        SKIPPED+=(jwt-bearer)
        continue
      fi
      log "scenario jwt-bearer: RFC 7523 grant with a service-account key (Tessera only; loadgen)"
      tessera service-account create bench-sa >"$WORK/sa.json" 2>>"$WORK/tessera-cli.log" \
        || { cat "$WORK/tessera-cli.log" >&2; die "tessera service-account create failed"; }
      for c in $CONCURRENCY; do
        loadgen_run jwt-bearer tessera "$T_ISSUER/token" "$c" jwt-bearer "$T_ISSUER/token" --key "$WORK/sa.json"
      done ;;
  esac
done

T_PEAK=$(rss_kib "$T_PID" VmHWM)
P_PEAK=$(rss_kib "$P_PID" VmHWM)
T_END=$(rss_kib "$T_PID" VmRSS)
P_END=$(rss_kib "$P_PID" VmRSS)

# ---------------------------------------------------------------- report
mkdir -p "$BENCH_DIR/results"
META="$WORK/meta.json"
node -e '
const [idleT, idleP, peakT, peakP, endT, endP, dur, warm, conc, skipped] = process.argv.slice(1);
const os = require("os");
const kib = (v) => Number(v) || 0;
console.log(JSON.stringify({
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, kernel: os.release(), loadavg_at_end: os.loadavg() },
  pinning: { servers: "CPU 0 (both)", load_generator: "CPU 1" },
  duration_s: Number(dur), warmup_s: Number(warm), concurrency: conc.split(" ").map(Number),
  skipped: skipped ? skipped.split(" ") : [],
  rss_kib: { tessera: { idle: kib(idleT), peak: kib(peakT), end: kib(endT) }, peer: { idle: kib(idleP), peak: kib(peakP), end: kib(endP) } },
}));' "$T_IDLE" "$P_IDLE" "$T_PEAK" "$P_PEAK" "$T_END" "$P_END" "$DURATION" "$WARMUP" "$CONCURRENCY" "${SKIPPED[*]:-}" >"$META"
VERSIONS="$WORK/versions.json"
node -e 'console.log(JSON.stringify({tessera: process.argv[1], tessera_commit: process.argv[2], oidc_provider: process.argv[3], node: process.version, wrk: process.argv[4]}))' \
  "$("$TESSERA_BIN" --version 2>/dev/null | head -n1)" \
  "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo +dirty)" \
  "$(json "$BENCH_DIR/node_modules/oidc-provider/package.json" j.version)" \
  "$(wrk -v 2>&1 | head -n1 | awk '{print $2}')" >"$VERSIONS"
node "$BENCH_DIR/report.mjs" "$RESULTS" "$META" "$VERSIONS" "$BENCH_DIR/results/latest.json"

# Every non-2xx response fails the run: its figures do not measure token issuance.
if [[ ${#FAILURES[@]} -gt 0 ]]; then
  printf '\nFAILED: %s\n' "${FAILURES[@]}" >&2
  exit 1
fi
