#!/usr/bin/env bash
# start-postgres.sh DIR [--port N] — a private PostgreSQL cluster for tests, on 127.0.0.1 only.
#
# Installs PostgreSQL (Debian packages) when no initdb is present, without creating Debian's
# 'main' cluster. Initialises a cluster in DIR/pgdata (first run), starts it on a free port
# (or --port N), TCP only (no Unix socket), and creates the role tessera/tessera-secret
# (LOGIN CREATEDB, so tests can create scratch databases) owning database tessera.
#
# stdout: one line, the database URL. Files in DIR:
#   env               TEST_DATABASE_URL, TESSERA_TEST_PG_ADMIN_URL, TESSERA_TEST_PG_PID_FILE, TESSERA_TEST_PG_DIR
#   stop.sh [--kill]  fast shutdown; --kill = immediate shutdown (a crash, WAL recovery on restart)
#   postgres.log      server log
# Running it again while the cluster runs only prints the URL; after stop.sh it restarts the
# same cluster (data kept) on the same port when that is still free.
# PG_RESET=1 wipes the cluster first. PG_DURABLE=1 keeps fsync on.
# As root the server runs as user 'postgres' (runuser); DIR and its ancestors get o+x if needed.
set -euo pipefail
SCRIPT_NAME=start-postgres
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/common.sh"

usage() { die "usage: start-postgres.sh DIR [--port N]"; }
[ $# -ge 1 ] || usage
DIR=$(abs_dir "$1"); shift
PORT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --port) [ $# -ge 2 ] || usage; PORT=$2; shift 2;;
    --port=*) PORT=${1#--port=}; shift;;
    *) usage;;
  esac
done
check_port "$PORT"
DATA=$DIR/pgdata
SUPER_PW=postgres-secret
APP_USER=tessera APP_PW=tessera-secret APP_DB=tessera

# ------------------------------------------------------------------ binaries
pg_bindir() {  # newest installed server version (Debian keeps initdb and pg_ctl off PATH)
  local d v best="" bestv=0
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] || continue
    v=$(basename "$(dirname "$d")"); v=${v%%.*}
    if [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -gt "$bestv" ]; then best=$d; bestv=$v; fi
  done
  if [ -z "$best" ] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    best=$(dirname "$(command -v pg_ctl)")
  fi
  echo "$best"
}
BIN=$(pg_bindir)
if [ -z "$BIN" ]; then apt_install postgresql postgresql-client; BIN=$(pg_bindir); fi
[ -n "$BIN" ] || die "no PostgreSQL server binaries (initdb, pg_ctl) found"
PSQL=$BIN/psql; [ -x "$PSQL" ] || PSQL=$(command -v psql) || die "psql not found"

# ------------------------------------------------------------------ who runs the server
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 ||
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres ||
    die "could not create the user postgres"
  RUN_USER=postgres
  as() { runuser -u postgres -- "$@"; }
  grant_search "$DIR" postgres
else
  RUN_USER=$(id -un)
  as() { "$@"; }
fi
cd "$DIR"   # runuser keeps the cwd: use one the server user can enter

postmaster_pid() { head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true; }
running() { pid_has "$DATA" "$(postmaster_pid)"; }
superpsql() {
  PGPASSWORD=$SUPER_PW PGCONNECT_TIMEOUT=5 "$PSQL" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$PORT" -U postgres "$@"
}

# ------------------------------------------------------------------ already running?
if running; then
  cur=$(cat "$DIR/port" 2>/dev/null || true)
  [ -n "$cur" ] && [ -s "$DIR/url" ] || die "a postmaster runs on $DATA but $DIR/port is missing; run $DIR/stop.sh"
  [ "$PORT" = 0 ] || [ "$PORT" = "$cur" ] || die "the cluster of $DIR already runs on port $cur; run $DIR/stop.sh first"
  PGCONNECT_TIMEOUT=3 "$BIN/pg_isready" -q -h 127.0.0.1 -p "$cur" ||
    die "postmaster $(postmaster_pid) of $DIR does not accept connections on port $cur; run $DIR/stop.sh --kill"
  cat "$DIR/url"; exit 0
fi
# A dead postmaster (kill -9) leaves postmaster.pid; if its pid is an unreaped zombie the new
# postmaster would refuse to start. It is not running (checked above), so drop the file.
rm -f "$DATA/postmaster.pid"

# ------------------------------------------------------------------ initdb (first run, PG_RESET=1)
[ "${PG_RESET:-0}" != 1 ] || rm -rf "$DATA"
if [ ! -f "$DATA/PG_VERSION" ]; then
  rm -rf "$DATA"; mkdir -p "$DATA"; chown "$RUN_USER" "$DATA"; chmod 700 "$DATA"
  pwfile=$DIR/.pw; (umask 077; echo "$SUPER_PW" > "$pwfile"); chown "$RUN_USER" "$pwfile"
  if ! as "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$pwfile" -A scram-sha-256 \
        -E UTF8 --no-locale -N >"$DIR/initdb.log" 2>&1; then
    rm -f "$pwfile"; cat "$DIR/initdb.log" >&2; die "initdb failed"
  fi
  rm -f "$pwfile"
  {
    echo "# --- tessera test cluster (start-postgres.sh)"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = ''"
    echo "max_connections = 200"
    echo "log_min_messages = warning"
    echo "log_line_prefix = '%m [%p] %q%u@%d '"
    if [ "${PG_DURABLE:-0}" != 1 ]; then
      # Survives a killed server (kill -9, stop.sh --kill), not an OS crash. synchronous_commit
      # stays on: with it off, rows committed just before a kill -9 are lost.
      echo "fsync = off"
      echo "full_page_writes = off"
    fi
    echo "synchronous_commit = on"
  } >> "$DATA/postgresql.conf"
fi

# ------------------------------------------------------------------ start
touch "$DIR/postgres.log"; chown "$RUN_USER" "$DIR/postgres.log"
want=$PORT ok=0
for attempt in 1 2 3 4 5; do
  if [ "$want" = 0 ]; then
    if [ $attempt = 1 ] && [ -s "$DIR/port" ] && port_free "$(cat "$DIR/port")"; then PORT=$(cat "$DIR/port"); else PORT=$(free_port); fi
  elif ! port_free "$PORT"; then
    die "127.0.0.1:$PORT is already in use"
  fi
  from=$(( $(wc -l < "$DIR/postgres.log") + 1 ))
  if as "$BIN/pg_ctl" -D "$DATA" -l "$DIR/postgres.log" -w -t 60 -o "-p $PORT" start >/dev/null 2>&1; then
    ok=1; break
  fi
  new=$(tail -n +"$from" "$DIR/postgres.log")
  if [[ "$new" == *"Address already in use"* ]] && [ "$want" = 0 ]; then
    info "port $PORT taken meanwhile, retrying"; continue
  fi
  if [[ "$new" == *"is still in use"* ]]; then   # backends of a killed postmaster still exiting
    sleep 1; continue
  fi
  echo "$new" | tail -n 20 >&2
  die "PostgreSQL did not start on 127.0.0.1:$PORT (log: $DIR/postgres.log)"
done
[ $ok = 1 ] || die "PostgreSQL did not start after 5 attempts (log: $DIR/postgres.log)"

# ------------------------------------------------------------------ role and database (idempotent)
superpsql -d postgres >/dev/null <<SQL || die "creating the role or database failed"
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', '$APP_USER', '$APP_PW')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_USER') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$APP_DB', '$APP_USER')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$APP_DB') \gexec
SQL

# ------------------------------------------------------------------ outputs
URL="postgres://$APP_USER:$APP_PW@127.0.0.1:$PORT/$APP_DB"
echo "$URL" > "$DIR/url"; echo "$PORT" > "$DIR/port"
cat > "$DIR/env" <<EOF
TEST_DATABASE_URL=$URL
TESSERA_TEST_PG_ADMIN_URL=postgres://postgres:$SUPER_PW@127.0.0.1:$PORT/postgres
TESSERA_TEST_PG_PID_FILE=$DATA/postmaster.pid
TESSERA_TEST_PG_DIR=$DIR
EOF
write_exec "$DIR/stop.sh" <<EOF
#!/usr/bin/env bash
# stop.sh [--kill] — stop the PostgreSQL cluster of this directory (generated by start-postgres.sh).
# Fast shutdown; --kill = immediate shutdown (like a crash: WAL recovery at the next start).
set -u
mode=fast; [ "\${1:-}" = --kill ] && mode=immediate
cd "$DIR" || exit 1
pid=\$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null) || exit 0
if ! { [ -r "/proc/\$pid/cmdline" ] && tr '\\0' ' ' <"/proc/\$pid/cmdline" | grep -qF -- "$DATA"; }; then
  rm -f "$DATA/postmaster.pid"; exit 0   # not running (or an unreaped zombie)
fi
# A test may have paused the server (kill -STOP): resume it and its backends, or pg_ctl hangs.
kill -CONT "\$pid" 2>/dev/null
for c in \$(ps -o pid= --ppid "\$pid" 2>/dev/null); do kill -CONT "\$c" 2>/dev/null; done
if [ "\$(id -u)" = 0 ] && [ "$RUN_USER" != root ]; then
  runuser -u "$RUN_USER" -- "$BIN/pg_ctl" -D "$DATA" -m \$mode -w -t 60 stop >/dev/null 2>&1
else
  "$BIN/pg_ctl" -D "$DATA" -m \$mode -w -t 60 stop >/dev/null 2>&1
fi
rc=\$?
[ \$rc = 0 ] || echo "stop.sh: pg_ctl stop failed (\$rc); log: $DIR/postgres.log" >&2
exit \$rc
EOF
echo "$URL"
