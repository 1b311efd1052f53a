#!/usr/bin/env bash
# Every test RedCloud has: the Rust tests (unit, property, cluster tests on real
# servers, the short seeded fault run, the CLI binary), the monitoring checks
# (scripts/check-monitoring.sh: promtool on the alert rules and their tests, the
# Prometheus config, the Grafana dashboard), every fuzz target for a
# few seconds (scripts/fuzz.sh; REDCLOUD_FUZZ_SECONDS), then the container suite
# (images built with scripts/build-images.sh, then scripts/container-test.sh on a
# bridge network and on a swarm overlay network, then scripts/swarm-test.sh: the
# swarm stack deployed, scaled and rolled over). The container suite skips, with a
# message, where no Docker engine answers; REDCLOUD_SKIP_CONTAINERS=1 skips it too,
# REDCLOUD_SKIP_SWARM=1 the swarm stack test alone.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "==> cargo test --workspace"
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line over every test binary (cargo prints one "test result" per binary).
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i; if (p == 0) exit 1 }' "$log"

echo "==> monitoring: alert rules, their unit tests, Prometheus config, dashboard (scripts/check-monitoring.sh)"
scripts/check-monitoring.sh

echo "==> fuzz targets, ${REDCLOUD_FUZZ_SECONDS:-15} s each (scripts/fuzz.sh)"
REDCLOUD_FUZZ_DEV=1 scripts/fuzz.sh "${REDCLOUD_FUZZ_SECONDS:-15}"

echo "==> container suite"
if [ "${REDCLOUD_SKIP_CONTAINERS:-0}" = 1 ]; then
  echo "container suite: SKIPPED (REDCLOUD_SKIP_CONTAINERS=1)"
elif ! docker info >/dev/null 2>&1; then
  echo "container suite: SKIPPED (no Docker engine answers: docker info failed)"
else
  scripts/build-images.sh
  scripts/cli-container-test.sh
  scripts/compose-test.sh
  scripts/container-test.sh bridge
  scripts/container-test.sh overlay
  if [ "${REDCLOUD_SKIP_SWARM:-0}" = 1 ]; then
    echo "swarm stack test: SKIPPED (REDCLOUD_SKIP_SWARM=1)"
  else
    scripts/swarm-test.sh
  fi
fi
