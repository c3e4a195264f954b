# shellcheck shell=bash
# scripts/lib/common.sh — helpers shared by the test-infrastructure scripts.
# Source it after `set -euo pipefail` and after setting SCRIPT_NAME, e.g.
#   SCRIPT_NAME=start-ldap; . "$(dirname "$0")/lib/common.sh"
# Nothing here starts anything; every network address used is 127.0.0.1.

export PATH="$PATH:/usr/sbin:/sbin"

log() { echo "${SCRIPT_NAME:-tessera}: $*" >&2; }
# Progress messages: silent unless TESSERA_VERBOSE=1 (the scripts are quiet on success).
info() { if [ "${TESSERA_VERBOSE:-0}" = 1 ]; then log "$@"; fi; }
die() { log "ERROR: $*"; exit 1; }

# abs_dir DIR -> creates DIR if needed and prints its physical absolute path.
# Paths with whitespace are refused: they end up unquoted in server config files.
abs_dir() {
  case "$1" in *[[:space:]]*) die "directory must not contain whitespace: '$1'";; esac
  mkdir -p "$1" || die "cannot create $1"
  (cd "$1" && pwd -P)
}

# port_free PORT -> true if nothing accepts TCP connections on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port -> a TCP port that is free on 127.0.0.1 right now. Racy by nature:
# callers check that their server really came up and retry with another port.
free_port() {
  local p
  if command -v python3 >/dev/null 2>&1 &&
     p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null); then
    echo "$p"; return
  fi
  while :; do
    p=$(( 20000 + RANDOM % 40000 ))
    if port_free "$p"; then echo "$p"; return; fi
  done
}

# check_port VALUE -> dies unless VALUE is a TCP port number (0 allowed = pick one).
check_port() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -lt 65536 ] || die "bad port '$1'"; }

# pid_has ARG PID -> true if PID is alive and its command line contains ARG.
# A zombie (reaped late by PID 1 after kill -9) has an empty cmdline and does not count;
# `kill -0` alone would say it is alive.
pid_has() {
  local needle=$1 pid=${2:-} cmd
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *"$needle"* ]]
}

# grant_search DIR USER -> as root, give o+x (search, not read) to DIR and each ancestor that
# lacks it, so a server that drops privileges to USER can reach files below a `mktemp -d` dir.
grant_search() {
  local dir=$1 user=$2 d
  [ "$(id -u)" = 0 ] || return 0
  runuser -u "$user" -- test -x "$dir" 2>/dev/null && return 0
  d=$dir
  while [ "$d" != / ]; do
    if [ $(( 0$(stat -c %a "$d") & 1 )) = 0 ]; then chmod o+x "$d"; info "chmod o+x $d (for user $user)"; fi
    d=$(dirname "$d")
  done
  runuser -u "$user" -- test -x "$dir" || die "user $user cannot enter $dir"
}

# ------------------------------------------------------------------ Debian packages
# pkg_installed NAME -> true if the Debian package NAME is installed.
pkg_installed() {
  dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

# apt_install PKG... -> installs the packages non-interactively, serialised by a lock so that
# several start scripts may run in parallel. Services are never started by the packages
# (policy-rc.d), slapd builds no default instance, PostgreSQL creates no 'main' cluster.
# `apt-get update` runs at most once an hour (a stamp), and again if an install fails.
TESSERA_APT_LOCK=${TESSERA_APT_LOCK:-/tmp/.tessera-apt.lock}
APT_STAMP=/var/lib/apt/lists/.tessera-updated
apt_update() {
  local i
  for i in 1 2 3 4 5 6; do   # apt-get update has no lock timeout: retry while another apt runs
    if apt-get update -q >"$APT_ERR" 2>&1; then touch "$APT_STAMP"; return 0; fi
    sleep 5
  done
  return 1
}
apt_install() {
  [ $# -gt 0 ] || return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages ($*) and not root: run 'apt-get install $*' as root"
  command -v apt-get >/dev/null 2>&1 || die "missing packages ($*) and no apt-get (Debian/Ubuntu expected)"
  log "installing Debian packages: $*"
  exec 9>"$TESSERA_APT_LOCK"
  flock -w 1200 9 || die "timed out waiting for $TESSERA_APT_LOCK"
  local todo=() p
  for p in "$@"; do pkg_installed "$p" || todo+=("$p"); done   # another script may have done it
  if [ ${#todo[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    APT_ERR=$(mktemp)
    # slapd: do not build Debian's default instance. PostgreSQL: no 'main' cluster.
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
    mkdir -p /etc/postgresql-common/createcluster.d
    [ -f /etc/postgresql-common/createcluster.d/50-no-main-cluster.conf ] ||
      echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/50-no-main-cluster.conf
    # Never start a system service (tinyproxy, slapd, postgresql would otherwise start one).
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
    fi
    local ok=0 i
    if [ -z "$(find "$APT_STAMP" -mmin -60 2>/dev/null)" ] && ! apt_update; then ok=update; fi
    for i in 1 2; do
      [ "$ok" = 0 ] || break
      if apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${todo[@]}" >"$APT_ERR" 2>&1; then
        ok=1; break
      fi
      # stale package lists (404) are the usual cause of a failed install
      if [ $i = 1 ] && ! apt_update; then ok=update; fi
    done
    if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ "$ok" != 1 ]; then
      tail -n 30 "$APT_ERR" >&2; rm -f "$APT_ERR"
      if [ "$ok" = update ]; then die "apt-get update failed"; fi
      die "apt-get install ${todo[*]} failed"
    fi
    rm -f "$APT_ERR"
  fi
  exec 9>&-
}

# need_cmds "cmd:package" ... -> installs the packages whose command is missing.
need_cmds() {
  local spec missing=()
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
  done
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# write_exec FILE < TEXT -> writes an executable script from stdin.
write_exec() { cat > "$1"; chmod 755 "$1"; }
