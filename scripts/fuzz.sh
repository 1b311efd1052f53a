#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) with libFuzzer via cargo fuzz, on
# stable Rust (no sanitizer: `-s none`; Rust's own bounds and overflow checks, and
# debug assertions, are on). Each target starts from seeds made from real
# messages and real books (fuzz/examples/make_seeds.rs) plus what earlier runs
# kept in fuzz/corpus/.
#
#   scripts/fuzz.sh                 # every target for 600 s (the issue-12 figure)
#   scripts/fuzz.sh 20              # every target for 20 s (what CI runs)
#   scripts/fuzz.sh 60 gutenberg    # one target
#
# Prints one JSON line per target: {"target", "seconds", "executions",
# "exec_per_s", "coverage", "corpus", "crashes"}; exits non-zero if any target
# crashed, leaked, ran out of memory or timed out (the input is kept in
# fuzz/artifacts/TARGET/, replay it with `cargo fuzz run -s none TARGET FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(gossip_push anti_entropy internal_json grpc_requests search_query gutenberg)
fi
books=${REDCLOUD_CORPUS:-../shared/corpus}/books
books=$(realpath -q "$books" || true)

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
triple=$(rustc -vV | sed -n 's/^host: //p')
build_log=$(mktemp)
# REDCLOUD_FUZZ_DEV=1 builds without optimisation: half the build time, fewer
# executions per second; what a short smoke run in CI wants.
if [ "${REDCLOUD_FUZZ_DEV:-0}" = 1 ]; then
  build_flags=(--dev)
  profile=debug
else
  build_flags=()
  profile=release
fi
cargo fuzz build -s none "${build_flags[@]}" >"$build_log" 2>&1 || { cat "$build_log" >&2; exit 1; }
rm -f "$build_log"
(cd fuzz && cargo run -q --example make-seeds -- corpus ${books:+"$books"})

# The targets' stores live here, removed at the end (several runs may go at once).
export TMPDIR
TMPDIR=$(mktemp -d)
trap 'rm -rf "$TMPDIR"' EXIT

failed=0
for t in "${targets[@]}"; do
  log=$(mktemp)
  mkdir -p "fuzz/artifacts/$t"
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  max_len=4096
  [ "$t" = gutenberg ] && max_len=65536
  [ "$t" = gossip_push ] || [ "$t" = anti_entropy ] && max_len=16384
  # The binaries built above, run directly: a source edit during a long run does
  # not make `cargo fuzz run` rebuild (or fail to) between targets.
  set +e
  "fuzz/target/$triple/$profile/$t" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  after=$(find "fuzz/artifacts/$t" -type f | wc -l)
  crashes=$((after - before))
  [ $rc -ne 0 ] && [ $crashes -eq 0 ] && crashes=1
  runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
  took=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE 'in [0-9]+' | grep -oE '[0-9]+' || echo "$secs")
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  corp=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  rate=$(( runs / (took > 0 ? took : 1) ))
  printf '{"target":"%s","seconds":%s,"executions":%s,"exec_per_s":%s,"coverage":%s,"corpus":%s,"crashes":%s}\n' \
    "$t" "$took" "$runs" "$rate" "$cov" "$corp" "$crashes"
  if [ $crashes -ne 0 ]; then
    failed=1
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 >&2 || tail -20 "$log" >&2
  fi
  rm -f "$log"
  rm -rf "$TMPDIR"/redcloud-fuzz-*
done
exit $failed
