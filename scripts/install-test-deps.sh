#!/usr/bin/env bash
# install-test-deps.sh — install everything the test suite needs, idempotently.
#   1. Debian packages (only the missing ones; one `apt-get update`): slapd ldap-utils postgresql
#      tinyproxy chromium wrk curl openssl. Services are never started by the packages.
#   2. tests/interop/node_modules: `npm ci` from package-lock.json (`npm install` when there is
#      no lockfile yet). The lockfile holds no registry addresses (tests/interop/.npmrc).
#   3. tests/interop/.venv: a Python venv with tests/interop/requirements.txt.
# Steps 2 and 3 are skipped while their stamp (a hash of the inputs and tool versions) is current,
# so a warm run takes well under a second. Quiet when there is nothing to do.
# TESSERA_SKIP_APT=1 skips step 1 (e.g. when not root and the packages are known to be there).
set -euo pipefail
SCRIPT_NAME=install-test-deps
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib/common.sh"
ROOT=$(cd "$HERE/.." && pwd)
INTEROP=$ROOT/tests/interop

elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

# ------------------------------------------------------------------ 1. Debian packages
if [ "${TESSERA_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in slapd ldap-utils tinyproxy chromium wrk curl openssl; do
    pkg_installed "$p" || missing+=("$p")
  done
  # PostgreSQL: any installed server version will do (start-postgres.sh picks the newest).
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then missing+=(postgresql postgresql-client); fi
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then missing+=(python3-venv); fi
  if [ ${#missing[@]} -gt 0 ]; then
    t=$(date +%s)
    apt_install "${missing[@]}"
    log "Debian packages installed in $(elapsed "$t")"
  fi
fi

sha() { sha256sum | cut -c1-64; }

# ------------------------------------------------------------------ 2. npm (tests/interop)
command -v npm >/dev/null 2>&1 || die "npm not found (install Node.js 20+ and npm)"
[ -f "$INTEROP/package.json" ] || die "$INTEROP/package.json missing"
npm_stamp() {
  { node --version; cat "$INTEROP/package.json" "$INTEROP/.npmrc" "$INTEROP/package-lock.json" 2>/dev/null; } | sha
}
if [ "$(cat "$INTEROP/node_modules/.tessera-stamp" 2>/dev/null || true)" != "$(npm_stamp)" ]; then
  t=$(date +%s)
  out=$(mktemp)
  (
    cd "$INTEROP"
    if [ -f package-lock.json ]; then
      npm ci --no-audit --no-fund --loglevel=error
    else
      npm install --no-audit --no-fund --loglevel=error
    fi
  ) >"$out" 2>&1 || { cat "$out" >&2; rm -f "$out"; die "npm install in tests/interop failed"; }
  rm -f "$out"
  if grep -q '"resolved"' "$INTEROP/package-lock.json"; then
    die "tests/interop/package-lock.json records download addresses (\"resolved\"): check tests/interop/.npmrc and regenerate it"
  fi
  npm_stamp > "$INTEROP/node_modules/.tessera-stamp"
  log "npm packages installed in tests/interop in $(elapsed "$t")"
fi

# ------------------------------------------------------------------ 3. Python venv (tests/interop/.venv)
VENV=$INTEROP/.venv
[ -f "$INTEROP/requirements.txt" ] || die "$INTEROP/requirements.txt missing"
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || die "python3 not found"
venv_stamp() { { "$PY" -VV; cat "$INTEROP/requirements.txt"; } | sha; }
if [ "$(cat "$VENV/.tessera-stamp" 2>/dev/null || true)" != "$(venv_stamp)" ]; then
  t=$(date +%s)
  out=$(mktemp)
  {
    rm -rf "$VENV" &&
    "$PY" -m venv "$VENV" &&
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$INTEROP/requirements.txt"
  } >"$out" 2>&1 || { cat "$out" >&2; rm -f "$out"; die "creating the Python venv $VENV failed"; }
  rm -f "$out"
  venv_stamp > "$VENV/.tessera-stamp"
  log "Python venv tests/interop/.venv ready in $(elapsed "$t")"
fi
