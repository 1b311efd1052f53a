#!/usr/bin/env bash
# The main job on one machine: start a local RedCloud cluster (1 controller and
# 3 chunkservers as processes on loopback, data under ./redcloud-data/demo), store
# the sample books in samples/, and show them: list, stat, download and verify,
# cluster status. Needs only cargo. Stops the cluster on exit unless --keep.
#
#   scripts/demo.sh [--keep] [BOOK...]
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
books=()
for a in "$@"; do
  case "$a" in
    --keep) keep=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) books+=("$a") ;;
  esac
done
[ ${#books[@]} -gt 0 ] || books=(samples/*.txt)

data=${DEMO_DATA_DIR:-redcloud-data/demo}
base=${DEMO_BASE_PORT:-18700}
ctl_grpc=127.0.0.1:$base
ctl_http=127.0.0.1:$((base + 1))

echo "==> building (release)"
cargo build --release --quiet --bin redcloud --bin redcloud-controller --bin redcloud-chunkserver
bin=target/release
mkdir -p "$data"
pids=()
cleanup() {
  if [ "$keep" = 0 ] && [ ${#pids[@]} -gt 0 ]; then
    echo "==> stopping the cluster"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap cleanup EXIT

echo "==> starting 1 controller and 3 chunkservers (logs in $data/*.log)"
RUST_LOG=${RUST_LOG:-info} "$bin/redcloud-controller" --data-dir "$data/controller" \
  --grpc-listen "$ctl_grpc" --http-listen "$ctl_http" >"$data/controller.log" 2>&1 &
pids+=($!)
for i in 1 2 3; do
  RUST_LOG=${RUST_LOG:-info} "$bin/redcloud-chunkserver" --data-dir "$data/chunkserver-$i" \
    --grpc-listen "127.0.0.1:$((base + 100 + i))" --http-listen "127.0.0.1:$((base + 110 + i))" \
    --controllers "$ctl_http" >"$data/chunkserver-$i.log" 2>&1 &
  pids+=($!)
done

export REDCLOUD_CONTROLLER=$ctl_grpc
echo "==> waiting for the chunkservers to report"
for _ in $(seq 1 100); do
  if "$bin/redcloud" cluster status --json 2>/dev/null | grep -c '"healthy": true' | grep -q '^3$'; then break; fi
  sleep 0.1
done

echo "==> uploading ${#books[@]} book(s)"
"$bin/redcloud" upload "${books[@]}"
echo "==> stored books"
"$bin/redcloud" ls
first=$(basename "${books[0]}")
echo "==> where $first lives"
"$bin/redcloud" stat "$first"
echo "==> downloading $first back and comparing"
out=$(mktemp)
"$bin/redcloud" download "$first" -o "$out"
cmp "$out" "${books[0]}" && echo "byte-identical: yes"
rm -f "$out"
echo "==> cluster status"
"$bin/redcloud" cluster status
if [ "$keep" = 1 ]; then
  echo
  echo "The cluster keeps running (pids ${pids[*]}). Try:"
  echo "  export REDCLOUD_CONTROLLER=$ctl_grpc; $bin/redcloud ls"
  echo "Stop it with: kill ${pids[*]}"
fi
