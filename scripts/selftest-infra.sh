#!/usr/bin/env bash
# selftest-infra.sh — end-to-end check of start-postgres.sh, start-ldap.sh and start-proxy.sh.
# Starts each service in a fresh temp dir, checks it like a client would, stops it, and ends with
# "selftest: N passed, N failed" (exit 0 only when nothing failed). Everything on 127.0.0.1.
set -uo pipefail
SCRIPT_NAME=selftest
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib/common.sh"
T=$(mktemp -d "${TMPDIR:-/tmp}/tessera-selftest.XXXXXX")
HTTP_PID=""
cleanup() {
  local d
  for d in proxy ldap2 ldap pg; do [ ! -x "$T/$d/stop.sh" ] || "$T/$d/stop.sh" >/dev/null 2>&1; done
  if [ -n "$HTTP_PID" ]; then kill "$HTTP_PID" 2>/dev/null; fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT

pass=0 fail=0
ok()  { pass=$((pass+1)); echo "ok   - $*"; }
bad() { fail=$((fail+1)); echo "FAIL - $*"; }
check() { local name=$1; shift; if "$@" >"$T/last.out" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/       /' "$T/last.out" | tail -n 5; fi; }
expect_rc() {  # expect_rc RC NAME CMD...
  local want=$1 name=$2 got; shift 2
  "$@" >"$T/last.out" 2>&1; got=$?
  if [ "$got" = "$want" ]; then ok "$name"; else bad "$name (exit $got, wanted $want)"; sed 's/^/       /' "$T/last.out" | tail -n 5; fi
}
expect_eq() {  # expect_eq NAME WANT GOT
  if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (got '$3', wanted '$2')"; fi
}
start() {  # start DIR SCRIPT ARGS... -> prints the URL (use as: X=$(start ...) || fatal ...)
  local dir=$1 script=$2; shift 2
  bash "$HERE/$script" "$T/$dir" "$@" 2>"$T/$dir.err" || { cat "$T/$dir.err" >&2; return 1; }
}
fatal() { bad "$1"; echo "selftest: $pass passed, $fail failed"; exit 1; }
t0=$(date +%s%N)

# ------------------------------------------------------------------ PostgreSQL
PG_URL=$(start pg start-postgres.sh) || fatal "start-postgres.sh"
( set -a; . "$T/pg/env"; set +a; [ "$TEST_DATABASE_URL" = "$PG_URL" ] ) && ok "pg: env has TEST_DATABASE_URL" || bad "pg: env has TEST_DATABASE_URL"
sql() { PGCONNECT_TIMEOUT=5 psql -X -q -At -v ON_ERROR_STOP=1 "$PG_URL" -c "$1"; }
expect_eq "pg: select 1" 1 "$(sql 'select 1' 2>&1)"
check "pg: tessera may create databases" sql "create database selftest_scratch"
check "pg: create table + insert" sql "create table t(x int); insert into t values (1)"
expect_eq "pg: second start prints the same URL" "$PG_URL" "$(bash "$HERE/start-postgres.sh" "$T/pg" 2>&1)"
"$T/pg/stop.sh"
expect_rc 2 "pg: down after stop.sh" sql "select 1"
expect_eq "pg: restart on the same URL" "$PG_URL" "$(bash "$HERE/start-postgres.sh" "$T/pg" 2>&1)"
"$T/pg/stop.sh" --kill
expect_eq "pg: restart after --kill" "$PG_URL" "$(bash "$HERE/start-postgres.sh" "$T/pg" 2>&1)"
expect_eq "pg: committed row survived --kill" 1 "$(sql 'select count(*) from t' 2>&1)"
"$T/pg/stop.sh"

# ------------------------------------------------------------------ OpenLDAP
N=3
LDAP_URL=$(export LDAP_PPOLICY_MAX_FAILURE=$N; start ldap start-ldap.sh --ldaps) || fatal "start-ldap.sh --ldaps"
set -a; . "$T/ldap/env"; set +a
P=ou=people,dc=example,dc=com
who() { ldapwhoami -x -o nettimeout=5 -H "${URL:-$LDAP_URL}" -D "uid=$1,$P" -w "$2"; }
tls() { LDAPTLS_CACERT=$TESSERA_TEST_LDAP_CA "$@"; }
svc() { ldapsearch -LLL -x -o nettimeout=5 -H "$LDAP_URL" -D "$TESSERA_TEST_LDAP_BIND_DN" -w "$TESSERA_TEST_LDAP_BIND_PASSWORD" -b "$TESSERA_TEST_LDAP_BASE" "$@"; }
expect_eq "ldap: env has TESSERA_TEST_LDAP_URL" "$LDAP_URL" "$TESSERA_TEST_LDAP_URL"
check "ldap: alice binds with StartTLS, test CA" tls ldapwhoami -x -ZZ -H "$LDAP_URL" -D "uid=alice,$P" -w alice-secret
expect_rc 49 "ldap: wrong password -> 49" who alice wrong
expect_rc 53 "ldap: empty password -> 53" who alice ""
check "ldap: LDAPS bind, test CA" tls ldapwhoami -x -H "$TESSERA_TEST_LDAPS_URL" -D "uid=bob,$P" -w bob-secret
expect_rc 32 "ldap: anonymous search sees nothing (32)" ldapsearch -x -H "$LDAP_URL" -b "$TESSERA_TEST_LDAP_BASE" "(uid=alice)"
expect_rc 32 "ldap: alice cannot read bob (32)" ldapsearch -x -H "$LDAP_URL" -D "uid=alice,$P" -w alice-secret -b "uid=bob,$P" -s base
expect_eq "ldap: svc-auth sees alice's memberOf" 2 "$(svc "(uid=alice)" memberOf | grep -c '^memberOf:')"
expect_eq "ldap: svc-auth cannot read userPassword" 0 "$(svc "(uid=alice)" userPassword | grep -c '^userPassword')"
expect_eq "ldap: (uid=twin) matches two entries" 2 "$(svc "(uid=twin)" dn | grep -c '^dn:')"
expect_eq "ldap: second start prints the same URL" "$LDAP_URL" "$(bash "$HERE/start-ldap.sh" "$T/ldap" --ldaps 2>&1)"
for _ in $(seq 1 "$N"); do who dave wrong >/dev/null 2>&1; done
expect_rc 49 "ldap: ppolicy locks dave after $N failures" who dave dave-secret
for _ in $(seq 1 "$N"); do who carol wrong >/dev/null 2>&1; done
check "ldap: carol (no policy) unaffected after $N failures" who carol carol-secret
"$T/ldap/stop.sh" --kill
expect_rc 255 "ldap: down after stop.sh --kill" who alice alice-secret
check "ldap: start-again.sh" "$T/ldap/start-again.sh"
check "ldap: LDAPS back on the same port" tls ldapwhoami -x -H "$TESSERA_TEST_LDAPS_URL" -D "uid=bob,$P" -w bob-secret
expect_rc 49 "ldap: dave still locked after crash + restart" who dave dave-secret
# A second instance (failover tests), with extra entries.
printf 'dn: uid=erin,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: erin\ncn: Erin O'"'"'Brien, Jr.\nsn: O'"'"'Brien\nuserPassword: erin-secret\n' > "$T/extra.ldif"
URL2=$(export LDAP_EXTRA_LDIF=$T/extra.ldif; start ldap2 start-ldap.sh) || fatal "second start-ldap.sh with LDAP_EXTRA_LDIF"
[ "$URL2" != "$LDAP_URL" ] && ok "ldap: second instance on another port" || bad "ldap: second instance on another port"
URL=$URL2 check "ldap: LDAP_EXTRA_LDIF entry binds on the second instance" who erin erin-secret
kill -STOP "$(cat "$TESSERA_TEST_LDAP_PID_FILE")"
expect_rc 124 "ldap: paused slapd hangs a bind (timeout)" timeout 2 ldapwhoami -x -H "$LDAP_URL" -D "uid=alice,$P" -w alice-secret
check "ldap: stop.sh stops a paused slapd" "$T/ldap/stop.sh"
"$T/ldap2/stop.sh"

# ------------------------------------------------------------------ proxy
PROXY=$(start proxy start-proxy.sh '^idp\.example\.test:8443$' '\.invalid(:[0-9]+)?(/|$)') || fatal "start-proxy.sh"
HTTP_PORT=$(free_port)
mkdir -p "$T/www"; echo hello > "$T/www/index.html"
python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory "$T/www" >/dev/null 2>&1 & HTTP_PID=$!
for _ in $(seq 1 100); do port_free "$HTTP_PORT" || break; sleep 0.05; done
cx() { curl -s -o /dev/null --max-time 5 -x "$PROXY" "$@"; }
expect_eq "proxy: denied CONNECT -> 403" 403 "$(cx -w '%{http_connect}' https://idp.example.test:8443/)"
grep -q 'refused on filtered url "idp.example.test:8443"' "$T/proxy/tinyproxy.log" && ok "proxy: log names the refused tunnel" || bad "proxy: log names the refused tunnel"
expect_eq "proxy: denied plain request to .invalid -> 403" 403 "$(cx -w '%{http_code}' http://idp.invalid/x)"
expect_eq "proxy: allowed plain request passes" "hello" "$(curl -s --max-time 5 -x "$PROXY" "http://127.0.0.1:$HTTP_PORT/index.html")"
expect_eq "proxy: CONNECT to any port allowed" "200 200" "$(cx -p -w '%{http_connect} %{http_code}' "http://127.0.0.1:$HTTP_PORT/index.html")"
expect_eq "proxy: second start prints the same URL" "$PROXY" "$(bash "$HERE/start-proxy.sh" "$T/proxy" 2>&1)"
"$T/proxy/stop.sh"
expect_eq "proxy: down after stop.sh" 000 "$(cx -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/")"

echo "selftest: took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
echo "selftest: $pass passed, $fail failed"
[ "$fail" = 0 ]
