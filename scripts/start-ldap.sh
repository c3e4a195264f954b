#!/usr/bin/env bash
# start-ldap.sh DIR [--ldaps] [--port N] [--ldaps-port N]
#   — a private OpenLDAP slapd for tests, on 127.0.0.1 only. Callable many times with
#     different DIRs (failover tests run two).
#
# Installs slapd + ldap-utils when missing (Debian's own instance is never configured or
# started). Makes a test CA and a server certificate (SAN DNS:localhost, IP:127.0.0.1) in
# DIR/tls, writes DIR/slapd.conf (mdb; overlays ppolicy and memberof when available), seeds the
# directory on the first run, and starts slapd on a free port (StartTLS offered) and, with
# --ldaps, on a second free port for LDAPS.
#
# stdout: one line, ldap://127.0.0.1:PORT. Files in DIR:
#   env               TESSERA_TEST_LDAP_* variables (see scripts/README.md)
#   stop.sh [--kill]  SIGTERM (or SIGKILL = a crash; mdb stays consistent)
#   start-again.sh    restart on the same port(s), data kept (lockouts included)
#   slapd.pid, slapd.log, tls/ca.pem
#
# Seeded directory, base dc=example,dc=com (passwords hashed {SSHA}):
#   cn=admin,dc=example,dc=com / admin-secret            rootdn
#   cn=svc-auth,ou=services,dc=example,dc=com / svc-secret  reads everything but userPassword
#   uid=alice|bob|carol|dave,ou=people / <uid>-secret    inetOrgPerson (cn, sn, givenName, mail)
#   cn=admins,ou=groups (alice), cn=staff,ou=groups (alice, bob)   groupOfNames
#   cn=lockout,ou=policies   ppolicy: pwdLockout TRUE, pwdMaxFailure $LDAP_PPOLICY_MAX_FAILURE
#                            (default 10); applies to dave only (pwdPolicySubentry)
#   uid=twin,ou=people and uid=twin,ou=contractors / twin-secret   two matches for (uid=twin)
# ACL: anonymous may only bind; svc-auth reads all but userPassword; a user reads (and may
# change the password of) its own entry only.
#
# Environment: LDAP_PPOLICY_MAX_FAILURE (10), LDAP_PPOLICY_LOCKOUT_DURATION (seconds, 0 = until
# an admin deletes pwdAccountLockedTime), LDAP_EXTRA_LDIF=FILE (added as rootdn at seeding,
# ldapmodify -a syntax), LDAP_RESET=1 (wipe and re-seed), LDAP_DEBUG=LEVEL (slapd -d, e.g. stats).
set -euo pipefail
SCRIPT_NAME=start-ldap
SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
. "$(dirname "$SELF")/lib/common.sh"

usage() { die "usage: start-ldap.sh DIR [--ldaps] [--port N] [--ldaps-port N]"; }
[ $# -ge 1 ] || usage
DIR=$(abs_dir "$1"); shift
PORT=0 LDAPS=0 LDAPS_PORT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --ldaps) LDAPS=1; shift;;
    --port) [ $# -ge 2 ] || usage; PORT=$2; shift 2;;
    --port=*) PORT=${1#--port=}; shift;;
    --ldaps-port) [ $# -ge 2 ] || usage; LDAPS=1; LDAPS_PORT=$2; shift 2;;
    --ldaps-port=*) LDAPS=1; LDAPS_PORT=${1#--ldaps-port=}; shift;;
    *) usage;;
  esac
done
check_port "$PORT"; check_port "$LDAPS_PORT"
if [ -n "${LDAP_EXTRA_LDIF:-}" ]; then [ -r "$LDAP_EXTRA_LDIF" ] || die "LDAP_EXTRA_LDIF=$LDAP_EXTRA_LDIF is not readable"; fi
MAX_FAILURE=${LDAP_PPOLICY_MAX_FAILURE:-10}
LOCKOUT_DURATION=${LDAP_PPOLICY_LOCKOUT_DURATION:-0}
[[ "$MAX_FAILURE" =~ ^[0-9]+$ ]] || die "LDAP_PPOLICY_MAX_FAILURE must be a number"
[[ "$LOCKOUT_DURATION" =~ ^[0-9]+$ ]] || die "LDAP_PPOLICY_LOCKOUT_DURATION must be a number"

BASE="dc=example,dc=com"
ADMIN_DN="cn=admin,$BASE" ADMIN_PW=admin-secret
SVC_DN="cn=svc-auth,ou=services,$BASE" SVC_PW=svc-secret

# ------------------------------------------------------------------ packages
need_cmds slapd:slapd slappasswd:slapd slapadd:slapd ldapsearch:ldap-utils ldapmodify:ldap-utils openssl:openssl
MODDIR=/usr/lib/ldap
if [ ! -e "$MODDIR/back_mdb.so" ] && [ ! -e "$MODDIR/back_mdb.la" ]; then
  MODDIR=$(dirname "$(find /usr/lib /usr/lib64 /usr/local/lib -name 'back_mdb.*' -print -quit 2>/dev/null || echo /none/x)")
fi
[ -d "$MODDIR" ] || die "slapd module back_mdb not found"
has_module() { ls "$MODDIR/$1".* >/dev/null 2>&1; }
SCHEMA=/etc/ldap/schema
[ -r "$SCHEMA/inetorgperson.schema" ] || die "$SCHEMA/inetorgperson.schema not found"

# ------------------------------------------------------------------ helpers
alive() { pid_has "$DIR/slapd.conf" "$(cat "$DIR/slapd.pid" 2>/dev/null || true)"; }
answers() {  # the root DSE is readable anonymously: a readiness probe that needs no bind
  ldapsearch -x -H "$1" -o nettimeout=2 -b "" -s base namingContexts >/dev/null 2>&1
}
kill_started() { kill -KILL "$(cat "$DIR/slapd.pid" 2>/dev/null)" 2>/dev/null || true; rm -f "$DIR/slapd.pid"; }
admin_modify() {
  ldapmodify -x -H "ldap://127.0.0.1:$PORT" -o nettimeout=10 -D "$ADMIN_DN" -w "$ADMIN_PW" "$@"
}

# ------------------------------------------------------------------ already running?
if alive; then
  url=$(cat "$DIR/url" 2>/dev/null || true)
  [ -n "$url" ] && answers "$url" ||
    die "slapd $(cat "$DIR/slapd.pid") of $DIR runs but does not answer on '${url:-?}'; run $DIR/stop.sh --kill"
  [ "$PORT" = 0 ] || [ "$PORT" = "$(cat "$DIR/port")" ] ||
    die "the slapd of $DIR already runs on port $(cat "$DIR/port"); run $DIR/stop.sh first"
  if [ "$LDAPS" = 1 ] && [ ! -s "$DIR/ldaps_port" ]; then
    die "the slapd of $DIR runs without LDAPS; run $DIR/stop.sh first"
  fi
  echo "$url"; exit 0
fi
rm -f "$DIR/slapd.pid"

# ------------------------------------------------------------------ TLS material (kept)
if [ ! -s "$DIR/tls/server.pem" ] || [ ! -s "$DIR/tls/ca.pem" ]; then
  rm -rf "$DIR/tls"; mkdir -p "$DIR/tls"
  (
    cd "$DIR/tls"
    # A CA and a leaf it signs: webpki (rustls) rejects a self-signed CA used as server cert.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=Tessera Test LDAP CA" -keyout ca.key -out ca.pem \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=localhost" -keyout server.key -out server.csr
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.pem
    chmod 600 ca.key server.key
  ) >"$DIR/openssl.log" 2>&1 || { cat "$DIR/openssl.log" >&2; die "openssl could not make the test certificates"; }
fi

# ------------------------------------------------------------------ config (rewritten each start)
[ "${LDAP_RESET:-0}" != 1 ] || rm -rf "$DIR/data" "$DIR/.seeded"
[ -f "$DIR/.seeded" ] || rm -rf "$DIR/data"   # leftovers of an interrupted seeding
mkdir -p "$DIR/data"
MEMBEROF=0; has_module memberof && MEMBEROF=1
PPOLICY=0; has_module ppolicy && PPOLICY=1
{
  echo "# generated by start-ldap.sh: private test instance, 127.0.0.1 only"
  for s in core cosine inetorgperson nis; do echo "include $SCHEMA/$s.schema"; done
  echo "modulepath $MODDIR"
  echo "moduleload back_mdb"
  [ $PPOLICY = 0 ] || echo "moduleload ppolicy"
  [ $MEMBEROF = 0 ] || echo "moduleload memberof"
  cat <<EOF
pidfile  $DIR/slapd.pid
argsfile $DIR/slapd.args
loglevel none
TLSCACertificateFile  $DIR/tls/ca.pem
TLSCertificateFile    $DIR/tls/server.pem
TLSCertificateKeyFile $DIR/tls/server.key

database mdb
suffix "$BASE"
rootdn "$ADMIN_DN"
rootpw $(slappasswd -h '{SSHA}' -s "$ADMIN_PW")
directory $DIR/data
maxsize 268435456
dbnosync
index objectClass eq
index uid,cn,mail,member eq
EOF
  if [ $PPOLICY = 1 ]; then
    echo "# no default policy: only entries with pwdPolicySubentry (dave) are subject to one"
    echo "overlay ppolicy"
    echo "ppolicy_use_lockout"
  fi
  if [ $MEMBEROF = 1 ]; then
    echo "overlay memberof"
    echo "memberof-group-oc groupOfNames"
    echo "memberof-member-ad member"
    echo "memberof-memberof-ad memberOf"
    echo "memberof-refint true"
  fi
  cat <<EOF
access to attrs=userPassword
  by self =w
  by anonymous auth
  by * none
access to *
  by dn.exact="$SVC_DN" read
  by self read
  by * none
EOF
} > "$DIR/slapd.conf"
slaptest -Q -u -f "$DIR/slapd.conf" >/dev/null 2>&1 || {
  slaptest -u -f "$DIR/slapd.conf" >&2 || true; die "slaptest rejected $DIR/slapd.conf"; }

# ------------------------------------------------------------------ offline seed (first run)
if [ ! -f "$DIR/.seeded" ]; then
  h() { slappasswd -h '{SSHA}' -s "$1"; }
  person() {  # person UID OU GIVEN SURNAME
    printf 'dn: uid=%s,ou=%s,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s %s\ngivenName: %s\nsn: %s\nmail: %s@example.com\nuserPassword: %s\n' \
      "$1" "$2" "$BASE" "$1" "$3" "$4" "$3" "$4" "$1" "$(h "$1-secret")"
  }
  {
    printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example Inc\n\n' "$BASE"
    for ou in people contractors groups services policies; do
      printf 'dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n' "$ou" "$BASE" "$ou"
    done
    printf 'dn: %s\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\ncn: svc-auth\nuserPassword: %s\n\n' \
      "$SVC_DN" "$(h "$SVC_PW")"
    if [ $PPOLICY = 1 ]; then
      printf 'dn: cn=lockout,ou=policies,%s\nobjectClass: device\nobjectClass: pwdPolicy\ncn: lockout\npwdAttribute: userPassword\npwdLockout: TRUE\npwdMaxFailure: %s\npwdLockoutDuration: %s\npwdFailureCountInterval: 0\n\n' \
        "$BASE" "$MAX_FAILURE" "$LOCKOUT_DURATION"
    fi
    person alice people Alice Anderson; echo
    person bob people Bob Brown; echo
    person carol people Carol Clark; echo
    person dave people Dave Davis
    [ $PPOLICY = 0 ] || printf 'pwdPolicySubentry: cn=lockout,ou=policies,%s\n' "$BASE"
    echo
    person twin people Tom Twin; echo
    person twin contractors Tim Twin; echo
  } > "$DIR/seed.ldif"
  slapadd -q -f "$DIR/slapd.conf" -l "$DIR/seed.ldif" >"$DIR/slapadd.log" 2>&1 ||
    { cat "$DIR/slapadd.log" >&2; die "slapadd failed (see $DIR/seed.ldif)"; }
fi

# ------------------------------------------------------------------ start
WANT_PORT=$PORT WANT_LDAPS=$LDAPS_PORT ok=0
prev() { [ -s "$DIR/$1" ] && port_free "$(cat "$DIR/$1")" && cat "$DIR/$1"; }
for attempt in 1 2 3 4 5; do
  # An automatic port comes back on the previous one if that is still free (like a real server).
  if [ "$WANT_PORT" = 0 ]; then
    PORT=$( { [ $attempt = 1 ] && prev port; } || free_port)
  elif ! port_free "$PORT"; then die "127.0.0.1:$PORT is already in use"; fi
  LISTEN="ldap://127.0.0.1:$PORT/"
  if [ "$LDAPS" = 1 ]; then
    if [ "$WANT_LDAPS" = 0 ]; then
      LDAPS_PORT=$( { [ $attempt = 1 ] && prev ldaps_port; } || free_port)
      [ "$LDAPS_PORT" != "$PORT" ] || LDAPS_PORT=$(free_port)
    elif ! port_free "$LDAPS_PORT"; then die "127.0.0.1:$LDAPS_PORT is already in use"; fi
    LISTEN="$LISTEN ldaps://127.0.0.1:$LDAPS_PORT/"
  fi
  URL="ldap://127.0.0.1:$PORT"
  echo "=== $(date -u +%FT%TZ) slapd on $LISTEN" >> "$DIR/slapd.log"
  # -d keeps slapd in the foreground (its own session via setsid); every std fd is redirected
  # so no caller's pipe stays open (a test capturing this script's output returns at once).
  setsid slapd -d "${LDAP_DEBUG:-0}" -h "$LISTEN" -f "$DIR/slapd.conf" </dev/null >>"$DIR/slapd.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do   # up to ~10 s
    kill -0 "$pid" 2>/dev/null || break
    if [ -s "$DIR/slapd.pid" ] && answers "$URL"; then ok=1; break; fi
    sleep 0.05
  done
  [ $ok = 0 ] || break
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # slapd -d 0 says nothing when it cannot bind: look at the ports.
  if { [ "$WANT_PORT" = 0 ] && ! port_free "$PORT"; } ||
     { [ "$LDAPS" = 1 ] && [ "$WANT_LDAPS" = 0 ] && ! port_free "$LDAPS_PORT"; }; then
    info "port taken meanwhile, retrying"; continue
  fi
  tail -n 20 "$DIR/slapd.log" >&2
  die "slapd did not come up on $LISTEN (log: $DIR/slapd.log; LDAP_DEBUG=-1 logs everything)"
done
[ $ok = 1 ] || die "slapd did not come up after 5 attempts (log: $DIR/slapd.log)"

# ------------------------------------------------------------------ online seed (first run)
# Groups are added through the running server so that the memberof overlay fills memberOf.
if [ ! -f "$DIR/.seeded" ]; then
  {
    printf 'dn: cn=admins,ou=groups,%s\nobjectClass: groupOfNames\ncn: admins\nmember: uid=alice,ou=people,%s\n\n' "$BASE" "$BASE"
    printf 'dn: cn=staff,ou=groups,%s\nobjectClass: groupOfNames\ncn: staff\nmember: uid=alice,ou=people,%s\nmember: uid=bob,ou=people,%s\n\n' "$BASE" "$BASE" "$BASE"
  } > "$DIR/groups.ldif"
  admin_modify -a -f "$DIR/groups.ldif" >"$DIR/seed-online.log" 2>&1 ||
    { cat "$DIR/seed-online.log" >&2; kill_started; die "adding the groups failed"; }
  if [ -n "${LDAP_EXTRA_LDIF:-}" ]; then
    admin_modify -a -f "$LDAP_EXTRA_LDIF" >>"$DIR/seed-online.log" 2>&1 ||
      { cat "$DIR/seed-online.log" >&2; kill_started; die "LDAP_EXTRA_LDIF=$LDAP_EXTRA_LDIF was rejected"; }
  fi
  touch "$DIR/.seeded"
fi

# ------------------------------------------------------------------ outputs
echo "$URL" > "$DIR/url"; echo "$PORT" > "$DIR/port"
if [ "$LDAPS" = 1 ]; then echo "$LDAPS_PORT" > "$DIR/ldaps_port"; else rm -f "$DIR/ldaps_port"; fi
{
  echo "TESSERA_TEST_LDAP_URL=$URL"
  [ "$LDAPS" = 0 ] || echo "TESSERA_TEST_LDAPS_URL=ldaps://127.0.0.1:$LDAPS_PORT"
  echo "TESSERA_TEST_LDAP_CA=$DIR/tls/ca.pem"
  echo "TESSERA_TEST_LDAP_BASE=$BASE"
  echo "TESSERA_TEST_LDAP_BIND_DN=$SVC_DN"
  echo "TESSERA_TEST_LDAP_BIND_PASSWORD=$SVC_PW"
  echo "TESSERA_TEST_LDAP_ADMIN_DN=$ADMIN_DN"
  echo "TESSERA_TEST_LDAP_ADMIN_PASSWORD=$ADMIN_PW"
  echo "TESSERA_TEST_LDAP_PPOLICY_MAX_FAILURE=$MAX_FAILURE"
  echo "TESSERA_TEST_LDAP_PID_FILE=$DIR/slapd.pid"
  echo "TESSERA_TEST_LDAP_DIR=$DIR"
} > "$DIR/env"
write_exec "$DIR/stop.sh" <<EOF
#!/usr/bin/env bash
# stop.sh [--kill] — stop the slapd of this directory (generated by start-ldap.sh).
# SIGTERM and wait; --kill = SIGKILL (a crash; mdb stays consistent). Works on a paused (STOP) slapd.
set -u
sig=TERM; [ "\${1:-}" = --kill ] && sig=KILL
pid=\$(cat "$DIR/slapd.pid" 2>/dev/null) || exit 0
alive() { [ -r "/proc/\$pid/cmdline" ] && tr '\\0' ' ' <"/proc/\$pid/cmdline" | grep -qF -- "$DIR/slapd.conf"; }
if alive; then
  kill -"\$sig" "\$pid" 2>/dev/null; kill -CONT "\$pid" 2>/dev/null
  for _ in \$(seq 1 100); do alive || break; sleep 0.05; done
  if alive; then kill -KILL "\$pid" 2>/dev/null; sleep 0.2; fi
fi
rm -f "$DIR/slapd.pid"
EOF
write_exec "$DIR/start-again.sh" <<EOF
#!/usr/bin/env bash
# start-again.sh — start the slapd of this directory again on the same port(s), data kept.
exec bash "$SELF" "$DIR" --port $PORT$( [ "$LDAPS" = 0 ] || echo " --ldaps-port $LDAPS_PORT")
EOF
echo "$URL"
