#!/usr/bin/env bash
# Container run of RedCloud (groundwork for the container suite; not yet in .ci/run):
# 3 controllers + 3 chunkservers on a user-defined network, found by alias only;
# books uploaded through the CLI container; one controller and one chunkserver
# moved to a second network with `docker network disconnect` (the CLI reaches them
# there), and both sides take uploads and a delete; reconnected; all controllers
# must reach the same state digest and every
# acknowledged upload must download byte-identical from every controller; a fresh
# chunkserver container must be filled by repair.
#
#   scripts/build-images.sh && scripts/container-test.sh
# Skips (exit 0, with a message) when no Docker engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  echo "container-test: SKIPPED (no Docker engine)"
  exit 0
fi
for img in redcloud-controller redcloud-chunkserver; do
  docker image inspect "$img:latest" >/dev/null 2>&1 || { echo "missing image $img: run scripts/build-images.sh" >&2; exit 1; }
done

net=rc-test-$$
side=rc-side-$$
books=${REDCLOUD_CORPUS:-../shared/corpus}/books
work=$(mktemp -d)
chmod 777 "$work"
containers=()
cleanup() {
  docker rm -f "${containers[@]}" >/dev/null 2>&1 || true
  docker network rm "$net" "$side" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

run_node() { # name role
  docker run -d --name "$1" --network "$net" --network-alias "$2" \
    -e GOSSIP_INTERVAL=500ms -e ANTI_ENTROPY_INTERVAL=3s -e HEARTBEAT_TIMEOUT=5s -e REPAIR_INTERVAL=2s \
    -e DISCOVERY_INTERVAL=2s "redcloud-$2:latest" >/dev/null
  containers+=("$1")
}
ip_of() { docker inspect -f "{{(index .NetworkSettings.Networks \"${2:-$net}\").IPAddress}}" "$1"; }
cli() { # controller-address args...   (CLI_NET picks the network, default the main one)
  local c=$1; shift
  docker run --rm --network "${CLI_NET:-$net}" -v "$books:/books:ro" -v "$work:/out" redcloud-controller:latest \
    redcloud --controller "$c" "$@"
}
digest() { cli "$(ip_of "$1"):8700" cluster status --json | grep '"state_digest"' | tr -d ' ",' | cut -d: -f2; }
wait_for() { # seconds description command...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "FAIL: timed out waiting until $what" >&2; exit 1; fi
    sleep 0.5
  done
}
converged() {
  local d0 d
  d0=$(digest ctl-1-$$)
  for c in ctl-2-$$ ctl-3-$$; do d=$(digest "$c"); [ -n "$d" ] && [ "$d" = "$d0" ] || return 1; done
}
healthy_chunkservers() { # controller n
  [ "$(cli "$(ip_of "$1"):8700" cluster status --json | grep -c '"healthy": true')" -ge "$2" ]
}

docker network create "$net" >/dev/null
for i in 1 2 3; do run_node ctl-$i-$$ controller; run_node cs-$i-$$ chunkserver; done
for i in 1 2 3; do wait_for 60 "ctl-$i sees 3 chunkservers" healthy_chunkservers ctl-$i-$$ 3; done

echo "==> uploading 12 books through the alias"
mapfile -t files < <(ls "$books" | head -12)
for f in "${files[@]}"; do cli controller upload "/books/$f" >/dev/null; done
wait_for 60 "controllers converge" converged

echo "==> partition: ctl-3 and cs-3 cut off on their own network; both sides write"
docker network create "$side" >/dev/null
docker network connect --alias controller "$side" ctl-3-$$
docker network connect --alias chunkserver "$side" cs-3-$$
docker network disconnect "$net" ctl-3-$$
docker network disconnect "$net" cs-3-$$
mapfile -t more < <(ls "$books" | sed -n 13,18p)
cli "$(ip_of ctl-1-$$):8700" rm "${files[0]}" >/dev/null
for f in "${more[@]:0:3}"; do cli "$(ip_of ctl-1-$$):8700" upload "/books/$f" >/dev/null; done
b="$(ip_of ctl-3-$$ "$side"):8700"
for f in "${more[@]:3:3}"; do CLI_NET=$side cli "$b" upload "/books/$f" >/dev/null; done
CLI_NET=$side cli "$b" rm "${files[1]}" >/dev/null
docker network connect --alias controller "$net" ctl-3-$$
docker network connect --alias chunkserver "$net" cs-3-$$
docker network disconnect "$side" ctl-3-$$
docker network disconnect "$side" cs-3-$$
wait_for 90 "controllers converge after the heal" converged

echo "==> every acknowledged upload downloads byte-identical from every controller"
for c in ctl-1-$$ ctl-2-$$ ctl-3-$$; do
  for f in "${files[@]:2}" "${more[@]}"; do
    cli "$(ip_of "$c"):8700" download "$f" -o "/out/$f" >/dev/null
    cmp -s "$work/$f" "$books/$f" || { echo "FAIL: $f from $c differs" >&2; exit 1; }
  done
  for gone in "${files[0]}" "${files[1]}"; do
    if cli "$(ip_of "$c"):8700" download "$gone" -o /out/gone >/dev/null 2>&1; then
      echo "FAIL: deleted $gone is back on $c" >&2; exit 1
    fi
  done
done

echo "==> a fresh chunkserver container is filled"
run_node cs-4-$$ chunkserver
wait_for 60 "ctl-1 sees 4 chunkservers" healthy_chunkservers ctl-1-$$ 4
filled() { # every chunkserver holds at least as many chunks as the live files use
  cli "$(ip_of ctl-1-$$):8700" cluster status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if len(s["chunkservers"]) >= 4 and all(c["chunk_count"] >= s["chunk_count"] for c in s["chunkservers"]) else 1)'
}
wait_for 90 "every chunkserver, the new one too, holds every live chunk" filled
echo "container-test: passed"
