#!/usr/bin/env bash
# The CLI as PID 1 in its own image (`redcloud-cli`, the original deployment line
# `docker run -it --rm ... redcloud-cli:latest`): it prints its help with no
# arguments, and it stops at once on SIGTERM (`docker stop`, exit 143) and on
# SIGINT (Ctrl-C, exit 130) while waiting on a cluster that never answers.
# Needs the images from scripts/build-images.sh.
set -euo pipefail

fail() { echo "cli-container-test: FAILED: $*" >&2; exit 1; }
cids=()
cleanup() { for c in "${cids[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT

echo "==> docker run redcloud-cli:latest (no arguments): its help"
help=$(timeout 60 docker run --rm redcloud-cli:latest 2>&1) || fail "no help: $help"
grep -q "Usage: redcloud" <<<"$help" || fail "no usage line in: $help"

# Starts `cluster wait` against an address nobody listens on; prints the id once
# the CLI has started waiting.
start_waiting() {
  local cid
  cid=$(docker run -d -t redcloud-cli:latest --controller 127.0.0.1:1 cluster wait --healthy --timeout 60s)
  cids+=("$cid")
  for _ in $(seq 1 100); do
    docker logs "$cid" 2>&1 | grep -q "waiting up to" && { echo "$cid"; return; }
    sleep 0.1
  done
  fail "the CLI did not start waiting: $(docker logs "$cid" 2>&1 | tail -3)"
}

# stopped SIGNAL CODE: sends SIGNAL, which must end the CLI within 5 s with CODE.
stopped() {
  local sig=$1 code=$2 cid start
  cid=$(start_waiting)
  start=$(date +%s%N)
  docker kill -s "$sig" "$cid" >/dev/null
  for _ in $(seq 1 50); do
    [ "$(docker inspect -f '{{.State.Running}}' "$cid")" = false ] && break
    sleep 0.1
  done
  [ "$(docker inspect -f '{{.State.Running}}' "$cid")" = false ] || fail "still running 5 s after SIG$sig"
  local took=$(( ($(date +%s%N) - start) / 1000000 ))
  local got
  got=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
  [ "$got" = "$code" ] || fail "SIG$sig: exit $got, expected $code"
  echo "SIG$sig: stopped in ${took} ms, exit $got"
}

echo "==> the CLI as PID 1 stops on SIGTERM and SIGINT"
stopped TERM 143
stopped INT 130
echo "cli-container-test: OK"
