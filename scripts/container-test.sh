#!/usr/bin/env bash
# The container suite: RedCloud as real containers, found by network alias only.
#
#   scripts/container-test.sh [bridge|overlay]     (images: scripts/build-images.sh)
#
# 1. 3 controllers + 3 chunkservers on a user-defined network (`bridge`), or on an
#    attachable swarm overlay network (`overlay`; runs `docker swarm init` if needed
#    and leaves the swarm again if it made it).
# 2. The corpus is uploaded through the CLI container, by the `controller` alias.
# 3. Partition: ctl-3 and cs-3 are moved to a second network (`docker network
#    disconnect` from the first); both sides upload and delete; reconnected.
# 4. `docker kill` a controller and a chunkserver in the middle of an upload (the
#    CLI is connected to that very controller and must fail over), then `docker start`.
# 5. `docker pause` ctl-1 (the CLI's first address) and cs-1: upload, download, ls
#    and search through the CLI still answer (the longest wait is printed).
# 6. All controllers reach the same state digest; every acknowledged upload downloads
#    byte-identical from every controller; deleted books are gone everywhere.
# 7. A fresh chunkserver container is added and filled; so is the restarted one.
#
# Skips (exit 0, with a message) when no Docker engine answers, or for `overlay` when
# swarm mode cannot be started here.
set -euo pipefail
cd "$(dirname "$0")/.."

driver=${1:-bridge}
case "$driver" in bridge | overlay) ;; *) echo "usage: $0 [bridge|overlay]" >&2; exit 2 ;; esac
if ! docker info >/dev/null 2>&1; then
  echo "container-test ($driver): SKIPPED (no Docker engine answers: docker info failed)"
  exit 0
fi
for img in redcloud-controller redcloud-chunkserver; do
  docker image inspect "$img:latest" >/dev/null 2>&1 || { echo "missing image $img: run scripts/build-images.sh" >&2; exit 1; }
done

started=$SECONDS
net=rc-test-$$
side=rc-side-$$
books=$(cd "${REDCLOUD_CORPUS:-../shared/corpus}/books" && pwd)
work=$(mktemp -d)
chmod 777 "$work"
containers=()
left_swarm=0
cleanup() {
  # REDCLOUD_KEEP_LOGS=DIR keeps every container's log there (for debugging a run).
  if [ -n "${REDCLOUD_KEEP_LOGS:-}" ]; then
    mkdir -p "$REDCLOUD_KEEP_LOGS"
    for c in "${containers[@]}"; do docker logs "$c" >"$REDCLOUD_KEEP_LOGS/$c.log" 2>&1 || true; done
  fi
  docker rm -f "${containers[@]}" >/dev/null 2>&1 || true
  docker network rm "$net" "$side" >/dev/null 2>&1 || true
  [ "$left_swarm" = 1 ] && docker swarm leave --force >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

netargs=()
if [ "$driver" = overlay ]; then
  if [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != active ]; then
    if ! err=$(docker swarm init 2>&1); then
      echo "container-test (overlay): SKIPPED (docker swarm init failed: $err)"
      exit 0
    fi
    left_swarm=1
  fi
  netargs=(-d overlay --attachable)
fi

step() { echo "==> [$((SECONDS - started))s] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
run_node() { # name role [network]
  docker run -d --name "$1" --network "${3:-$net}" --network-alias "$2" \
    -e GOSSIP_INTERVAL=500ms -e ANTI_ENTROPY_INTERVAL=3s -e HEARTBEAT_TIMEOUT=5s -e REPAIR_INTERVAL=2s \
    -e DISCOVERY_INTERVAL=2s "redcloud-$2:latest" >/dev/null
  containers+=("$1")
}
ip_of() { docker inspect -f "{{(index .NetworkSettings.Networks \"${2:-$net}\").IPAddress}}" "$1"; }
# The CLI keeps its login in /out/cli-config (XDG_CONFIG_HOME), shared by every CLI container.
cli_env=(-e XDG_CONFIG_HOME=/out/cli-config)
cli() { # controller-address args...   (CLI_NET picks the network, default the main one)
  local c=$1; shift
  docker run --rm --network "${CLI_NET:-$net}" -v "$books:/books:ro" -v "$work:/out" "${cli_env[@]}" \
    redcloud-controller:latest redcloud --controller "$c" "$@"
}
# `cluster status` exits 10 when the cluster is degraded; its JSON is printed all the same.
status_json() { cli "$@" cluster status --json || [ $? -eq 10 ]; }
digest() { status_json "$(ip_of "$1"):8700" | grep '"state_digest"' | tr -d ' ",' | cut -d: -f2; }
wait_for() { # seconds description command...
  local secs=$1 deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && fail "timed out after $secs s waiting until $what"
    sleep 0.5
  done
}
converged() {
  local d0 d
  d0=$(digest ctl-1-$$)
  for c in ctl-2-$$ ctl-3-$$; do d=$(digest "$c"); [ -n "$d" ] && [ "$d" = "$d0" ] || return 1; done
}
json_len() { python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
healthy_chunkservers() { # controller n
  [ "$(status_json "$(ip_of "$1"):8700" | grep -c '"healthy": true')" -ge "$2" ]
}
filled() { # every chunkserver (at least n) holds every live chunk, per ctl-1
  status_json "$(ip_of ctl-1-$$):8700" | python3 -c '
import json, sys
s = json.load(sys.stdin)
n = int(sys.argv[1])
cs = [c for c in s["chunkservers"] if c["healthy"]]
sys.exit(0 if len(cs) >= n and all(c["chunk_count"] >= s["chunk_count"] for c in cs) else 1)' "$1"
}

step "3 controllers + 3 chunkservers on a $driver network, no environment needed to find each other"
docker network create "${netargs[@]}" "$net" >/dev/null
for i in 1 2 3; do run_node ctl-$i-$$ controller; run_node cs-$i-$$ chunkserver; done
for i in 1 2 3; do wait_for 90 "ctl-$i sees 3 chunkservers" healthy_chunkservers ctl-$i-$$ 3; done

mapfile -t all < <(ls "$books")
# Held back for the kill phase: the 20 largest books.
mapfile -t late < <(ls -S "$books" | head -20)
mapfile -t first < <(printf '%s\n' "${all[@]}" "${late[@]}" | sort | uniq -u)
step "an account (registered through the alias; the CLI keeps the login)"
echo tester-password | docker run --rm -i --network "$net" -v "$work:/out" "${cli_env[@]}" \
  redcloud-controller:latest redcloud --controller controller register tester --password-stdin >/dev/null
step "uploading ${#first[@]} books through the alias"
cli controller upload "${first[@]/#//books/}" >/dev/null
wait_for 90 "controllers converge" converged

step "partition: ctl-3 and cs-3 cut off on their own network; both sides write"
docker network create "${netargs[@]}" "$side" >/dev/null
docker network connect --alias controller "$side" ctl-3-$$
docker network connect --alias chunkserver "$side" cs-3-$$
docker network disconnect "$net" ctl-3-$$
docker network disconnect "$net" cs-3-$$
a="$(ip_of ctl-1-$$):8700"
b="$(ip_of ctl-3-$$ "$side"):8700"
# Writes on the cut-off side need its chunkserver: cs-3 must first find ctl-3 at its
# new address and report its own (by DNS and heartbeat, a few seconds; on an overlay
# network the alias can take longer to appear on the new network).
side_ready() {
  CLI_NET=$side status_json "$b" | python3 -c '
import json, sys
s = json.load(sys.stdin)
ok = any(c["healthy"] and c["answered"] and c["grpc_address"].startswith(sys.argv[1] + ":")
         for c in s["chunkservers"])
sys.exit(0 if ok else 1)' "$(ip_of cs-3-$$ "$side")"
}
cut=$SECONDS
wait_for 60 "ctl-3 sees cs-3 at its address on the cut-off network" side_ready
echo "    (the cut-off side could store chunks $((SECONDS - cut)) s after the disconnect)"
deleted=("${first[0]}" "${first[1]}")
cli "$a" rm "${first[0]}" >/dev/null
CLI_NET=$side cli "$b" rm "${first[1]}" >/dev/null
# The same name written on both sides: both versions are kept, one wins everywhere.
printf 'written on the majority side\n' >"$work/both-sides.txt"
cli "$a" upload /out/both-sides.txt >/dev/null
printf 'written on the cut-off side\n' >"$work/both-sides-b.txt"
CLI_NET=$side cli "$b" upload /out/both-sides-b.txt --name both-sides.txt >/dev/null
cli "$a" upload "/books/${late[0]}" >/dev/null
CLI_NET=$side cli "$b" upload "/books/${late[1]}" >/dev/null
docker network connect --alias controller "$net" ctl-3-$$
docker network connect --alias chunkserver "$net" cs-3-$$
docker network disconnect "$side" ctl-3-$$
docker network disconnect "$side" cs-3-$$
wait_for 120 "controllers converge after the heal" converged
for c in ctl-1-$$ ctl-2-$$ ctl-3-$$; do
  n=$(cli "$(ip_of "$c"):8700" versions both-sides.txt --json | json_len)
  [ "$n" = 2 ] || fail "$c keeps $n versions of both-sides.txt, expected both (2)"
done

step "docker kill ctl-1 (the CLI's controller) and cs-1 in the middle of an upload, then docker start"
# A long upload: the 20 largest books concatenated, twice, then the held-back books.
cat "${late[@]/#/$books/}" "${late[@]/#/$books/}" >"$work/omnibus2.txt"
rest=("${late[@]:2}")
chunks_on() { # container: chunk files in its data volume, counted on the host
  local vol
  vol=$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Source}}{{end}}{{end}}' "$1")
  find "$vol" -type f -path '*/chunks/*' 2>/dev/null | wc -l
}
before=$(chunks_on cs-1-$$)
grew() { [ "$(chunks_on cs-1-$$)" -ge $((before + 8)) ]; }
up=cli-up-$$
docker run -d --name "$up" --network "$net" -v "$books:/books:ro" -v "$work:/out" "${cli_env[@]}" redcloud-controller:latest \
  redcloud --controller "$(ip_of ctl-1-$$):8700,controller" upload /out/omnibus2.txt "${rest[@]/#//books/}" >/dev/null
containers+=("$up")
wait_for 60 "the upload has stored 8 chunks on cs-1" grew
docker kill ctl-1-$$ cs-1-$$ >/dev/null
[ "$(docker inspect -f '{{.State.Running}}' "$up")" = true ] || fail "the upload ended before the kill"
fewer_healthy() { ! healthy_chunkservers "$1" 3; }
wait_for 60 "ctl-2 notices cs-1 is gone" fewer_healthy ctl-2-$$
docker start ctl-1-$$ cs-1-$$ >/dev/null
code=$(docker wait "$up")
[ "$code" = 0 ] || { docker logs "$up" 2>&1 | tail -5; fail "the upload through a killed controller failed (exit $code)"; }
wait_for 90 "ctl-1 sees 3 chunkservers again" healthy_chunkservers ctl-1-$$ 3
wait_for 120 "controllers converge after the restarts" converged

step "docker pause ctl-1 (the first address tried) and cs-1: no request waits on them"
docker pause ctl-1-$$ cs-1-$$ >/dev/null
longest=0
timed_cli() { # what args...   (through ctl-1 first, then the alias; must finish within 15 s)
  local what=$1 t0 t1; shift
  t0=$(date +%s.%N)
  timeout 15 docker run --rm --network "$net" -v "$books:/books:ro" -v "$work:/out" "${cli_env[@]}" \
    redcloud-controller:latest redcloud --controller "$(ip_of ctl-1-$$):8700,controller" "$@" >/dev/null ||
    { rc=$?; docker unpause ctl-1-$$ cs-1-$$ >/dev/null; fail "$what with ctl-1 and cs-1 paused failed or hung (exit $rc)"; }
  t1=$(date +%s.%N)
  local took; took=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
  echo "    $what: $took s (container start included)"
  longest=$(python3 -c "print(max($longest, $took))")
}
docker unpause ctl-1-$$ cs-1-$$ >/dev/null
timed_cli "ls, nothing paused (the container start alone)" ls
docker pause ctl-1-$$ cs-1-$$ >/dev/null
base=$longest
longest=0
printf 'written while ctl-1 and cs-1 were paused\n' >"$work/paused.txt"
timed_cli "upload" upload /out/paused.txt
timed_cli "download" download "${first[2]}" -o /out/paused-download.txt
timed_cli "ls" ls
timed_cli "search" search whale
docker unpause ctl-1-$$ cs-1-$$ >/dev/null
cmp -s "$work/paused-download.txt" "$books/${first[2]}" || fail "the download with ctl-1 paused differs"
echo "    longest with ctl-1 and cs-1 paused: $longest s, of which the pause: $(python3 -c "print(f'{$longest - $base:.2f}')") s"
wait_for 120 "controllers converge after the unpause" converged

step "every acknowledged upload downloads byte-identical from every controller"
expect=("${first[@]:2}" "${late[@]}")
for c in ctl-1-$$ ctl-2-$$ ctl-3-$$; do
  mkdir -p "$work/$c" && chmod 777 "$work/$c"
  cli "$(ip_of "$c"):8700" download "${expect[@]}" omnibus2.txt -o "/out/$c" >/dev/null
  for f in "${expect[@]}"; do cmp -s "$work/$c/$f" "$books/$f" || fail "$f from $c differs"; done
  cmp -s "$work/$c/omnibus2.txt" "$work/omnibus2.txt" || fail "omnibus2.txt from $c differs"
  for gone in "${deleted[@]}"; do
    if cli "$(ip_of "$c"):8700" download "$gone" -o /out/gone >/dev/null 2>&1; then
      fail "deleted $gone is back on $c"
    fi
  done
  listed=$(cli "$(ip_of "$c"):8700" ls --json | json_len)
  want=$((${#expect[@]} + 3)) # + omnibus2.txt, both-sides.txt, paused.txt
  [ "$listed" = "$want" ] || fail "$c lists $listed files, expected $want"
done

step "a fresh chunkserver container is added; it and the restarted cs-1 get every chunk"
run_node cs-4-$$ chunkserver
wait_for 90 "ctl-1 sees 4 chunkservers" healthy_chunkservers ctl-1-$$ 4
wait_for 180 "every chunkserver, the new one too, holds every live chunk" filled 4
echo "container-test ($driver): passed in $((SECONDS - started)) s"
