#!/usr/bin/env bash
# bench/login.sh — password-login throughput against raw argon2id, and unknown-user timing.
#
#     bench/login.sh            # 10 s per measurement
#     BENCH_SECONDS=30 bench/login.sh
#
# Runs the ignored end-to-end benchmark `signin::bench_password_logins` in release mode: the
# whole server in process on 127.0.0.1 (SQLite), argon2id at the server's parameters (OWASP:
# m=19 MiB, t=2, p=1). It measures, on the same cores:
#   1. raw argon2id verifications per second (one thread per core);
#   2. full login round trips per second: POST /login with the right password → chain →
#      session → authorization code → 303 to the client (2 connections per core);
#   3. the latency of an unknown user against a wrong password (interleaved, one connection).
# It fails when logins reach less than 80 % of the raw rate, or when the two failure paths
# differ by 15 % or more. The JSON result line is printed; record it in docs/benchmarks.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH_SECONDS=${BENCH_SECONDS:-10} cargo test --release -p tessera --test e2e -- \
  --ignored --exact signin::bench_password_logins --nocapture 2>&1 | grep -E '^\{|panicked|test result'
