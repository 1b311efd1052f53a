#!/usr/bin/env bash
# The main job on one machine: start a local RedCloud cluster (3 controllers and
# 3 chunkservers as processes on loopback, data under ./redcloud-data/demo), store
# the sample books in samples/ through one controller, and show them through the
# others: list, stat, download and verify, cluster status. Needs only cargo.
# Stops the cluster on exit unless --keep.
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
# Controller i: gRPC base+10i, HTTP base+10i+1; chunkserver i: base+100+i, base+110+i.
ctl_grpc() { echo "127.0.0.1:$((base + 10 * $1))"; }
ctl_http() { echo "127.0.0.1:$((base + 10 * $1 + 1))"; }
all_grpc="$(ctl_grpc 0),$(ctl_grpc 1),$(ctl_grpc 2)"
all_http="$(ctl_http 0),$(ctl_http 1),$(ctl_http 2)"

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

echo "==> starting 3 controllers and 3 chunkservers (logs in $data/*.log)"
for i in 0 1 2; do
  RUST_LOG=${RUST_LOG:-info} "$bin/redcloud-controller" --data-dir "$data/controller-$i" \
    --grpc-listen "$(ctl_grpc $i)" --http-listen "$(ctl_http $i)" --peers "$all_http" \
    >"$data/controller-$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  RUST_LOG=${RUST_LOG:-info} "$bin/redcloud-chunkserver" --data-dir "$data/chunkserver-$i" \
    --grpc-listen "127.0.0.1:$((base + 100 + i))" --http-listen "127.0.0.1:$((base + 110 + i))" \
    --controllers "$all_http" >"$data/chunkserver-$i.log" 2>&1 &
  pids+=($!)
done

echo "==> waiting for the chunkservers to report to every controller"
for i in 0 1 2; do
  for _ in $(seq 1 100); do
    if "$bin/redcloud" --controller "$(ctl_grpc $i)" cluster status --json 2>/dev/null |
      grep -c '"healthy": true' | grep -q '^3$'; then break; fi
    sleep 0.1
  done
done

# The demo's own login, kept beside its data (not in your ~/.config).
export XDG_CONFIG_HOME="$PWD/$data/cli"
echo "==> an account for the demo (books belong to accounts)"
if ! echo demo-password | "$bin/redcloud" --controller "$(ctl_grpc 0)" register demo --password-stdin 2>/dev/null; then
  echo demo-password | "$bin/redcloud" --controller "$(ctl_grpc 0)" login demo --password-stdin
fi
echo "==> uploading ${#books[@]} book(s) through controller 0 (public: readable without an account)"
"$bin/redcloud" --controller "$(ctl_grpc 0)" upload --public "${books[@]}"
echo "==> waiting for the controllers to converge (equal state digests)"
digests() {
  for i in 0 1 2; do
    { "$bin/redcloud" --controller "$(ctl_grpc $i)" cluster status --json || [ $? -eq 10 ]; } | grep '"state_digest"' | tr -d ' ",' | cut -d: -f2
  done
}
for _ in $(seq 1 100); do
  [ "$(digests | sort -u | wc -l)" = 1 ] && break
  sleep 0.2
done
echo "==> the books, as controller 2 lists them"
"$bin/redcloud" --controller "$(ctl_grpc 2)" ls
export REDCLOUD_CONTROLLER=$all_grpc
first=$(basename "${books[0]}")
echo "==> where $first lives"
"$bin/redcloud" stat "$first"
echo "==> downloading $first back and comparing"
out=$(mktemp)
"$bin/redcloud" download "$first" -o "$out"
cmp "$out" "${books[0]}" && echo "byte-identical: yes"
rm -f "$out"
echo "==> searching every book, through each controller (same ranked answer from all three)"
indexed() { # controller: books indexed, nothing pending
  local j
  j=$("$bin/redcloud" --controller "$(ctl_grpc $1)" search the --json)
  if echo "$j" | grep -q '"pending_books": 0'; then
    echo "$j" | grep '"indexed_books"' | tr -dc '0-9'
  fi
}
for i in 0 1 2; do
  for _ in $(seq 1 150); do
    [ "$(indexed $i)" = "${#books[@]}" ] && break
    sleep 0.2
  done
done
"$bin/redcloud" --controller "$(ctl_grpc 1)" search '"down the rabbit-hole"' --limit 3
"$bin/redcloud" --controller "$(ctl_grpc 2)" search raven nevermore --limit 3
"$bin/redcloud" --controller "$(ctl_grpc 0)" search lazarillo --lang es --limit 3
echo "==> the same query on each controller: names and scores"
for i in 0 1 2; do
  echo "controller $i: $("$bin/redcloud" --controller "$(ctl_grpc $i)" search love --limit 4 --json |
    grep -E '"(name|score)"' | tr -d ' ",' | paste -sd' ')"
done
echo "==> cluster status (controller 1)"
"$bin/redcloud" --controller "$(ctl_grpc 1)" cluster status || [ $? -eq 10 ] # 10: degraded
echo "==> state digests of the three controllers (equal: converged)"
digests
if [ "$keep" = 1 ]; then
  echo
  echo "The cluster keeps running (pids ${pids[*]}). Try:"
  echo "  export REDCLOUD_CONTROLLER=$all_grpc XDG_CONFIG_HOME=$PWD/$data/cli; $bin/redcloud ls"
  echo "Stop it with: kill ${pids[*]}"
fi
