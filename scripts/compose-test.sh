#!/usr/bin/env bash
# docker-compose.yml as users run it: it refuses to start without a cluster
# secret; with one, the three controllers' published ports answer on the host
# (8700/8701, 8710/8711, 8720/8721), `cluster status` through the first shows 3
# controllers and 3 healthy chunkservers, and the internal routes refuse calls
# without the secret (401). Needs the images from scripts/build-images.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "compose-test: SKIPPED (neither 'docker compose' nor docker-compose is installed)"
  exit 0
fi
fail() { echo "compose-test: FAILED: $*" >&2; exit 1; }
project="rccompose$$"
export REDCLOUD_CLUSTER_SECRET="compose-test-secret-$$"
cleanup() { "${compose[@]}" -p "$project" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
start=$SECONDS

echo "==> without REDCLOUD_CLUSTER_SECRET, compose refuses the file"
if env -u REDCLOUD_CLUSTER_SECRET "${compose[@]}" -p "$project" config >/dev/null 2>&1; then
  fail "compose accepted the file without a cluster secret"
fi

echo "==> ${compose[*]} up: 3 controllers (ports published on 127.0.0.1) + 3 chunkservers"
"${compose[@]}" -p "$project" up -d >/dev/null

http_status() { # url -> HTTP status, or 000
  python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=3).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
PY
}
wait_for() { # seconds description command...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after $1 s waiting for: $what"
    sleep 0.5
  done
}
healthy() { [ "$(http_status "http://127.0.0.1:$1/health")" = 200 ]; }
wait_for 90 "controller-1 /health on 127.0.0.1:8701" healthy 8701
wait_for 60 "controller-2 /health on 127.0.0.1:8711" healthy 8711
wait_for 60 "controller-3 /health on 127.0.0.1:8721" healthy 8721

status_json() {
  docker run --rm --network host redcloud-controller:latest \
    redcloud --controller 127.0.0.1:8700 cluster status --json || [ $? -eq 10 ]
}
all_healthy() {
  status_json | python3 -c '
import json, sys
s = json.load(sys.stdin)
cs = [c for c in s["chunkservers"] if c["healthy"]]
sys.exit(0 if len(cs) >= 3 and len(s["controllers"]) >= 3 else 1)'
}
echo "==> cluster status through the published gRPC port 8700"
wait_for 90 "3 controllers and 3 healthy chunkservers" all_healthy

echo "==> an internal route without the secret is refused"
code=$(http_status "http://127.0.0.1:8701/internal/peers")
[ "$code" = 401 ] || fail "GET /internal/peers without the secret answered $code, expected 401"

echo "compose-test: passed in $((SECONDS - start)) s"
