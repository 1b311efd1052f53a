#!/usr/bin/env bash
# The swarm suite: deploy/swarm/stack.yml with `docker stack deploy` on a single-node
# swarm, scaled and rolled over while a client keeps uploading.
#
#   scripts/swarm-test.sh          (images: scripts/build-images.sh)
#
# 1. `docker swarm init` if this engine is not in a swarm (and `docker swarm leave`
#    at the end only then); the stack is deployed under a name of its own, with a
#    fresh cluster secret and free host ports for the controllers' routing mesh.
# 2. Waits until every controller sees 3 controllers and 3 healthy chunkservers,
#    found through swarm's DNS (`tasks.controller`) alone; /health answers through the
#    published HTTP port and `cluster status` through the published gRPC port (where
#    the kernel has IPVS, which swarm's routing mesh needs; skipped otherwise).
# 3. An account; books uploaded with the CLI in a container on the stack's network.
# 4. `docker service scale controller=5 chunkserver=5`: every controller sees 5 + 5,
#    the digests agree and every chunkserver holds every chunk.
# 5. A rolling update of both services (`docker service update --force`: every task
#    replaced, one at a time per service, the stack's update_config) while a client
#    uploads without pause; each acknowledged upload is recorded.
# 6. After the update: the same node ids (each slot keeps its volume), 5 + 5 again,
#    filled and converged, and every acknowledged upload downloads byte-identical
#    (sha256) from every controller.
#
# Skips (exit 0, with a message) when no Docker engine answers or swarm mode cannot
# be started here. REDCLOUD_KEEP_LOGS=DIR keeps the services' logs there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  echo "swarm-test: SKIPPED (no Docker engine answers: docker info failed)"
  exit 0
fi
for img in redcloud-controller redcloud-chunkserver; do
  docker image inspect "$img:latest" >/dev/null 2>&1 || { echo "missing image $img: run scripts/build-images.sh" >&2; exit 1; }
done

started=$SECONDS
stack=rcswarm$$
net=${stack}_redcloud
books=$(cd "${REDCLOUD_CORPUS:-../shared/corpus}/books" && pwd)
work=$(mktemp -d)
chmod 777 "$work"
mkdir -m 777 "$work/cli-config"
initialised=0
deployed=0
uploader=
# Every container this script runs itself carries this label (cleanup removes them,
# also those a timeout left behind).
label=redcloud-swarm-test=$stack

step() { echo "==> [$((SECONDS - started))s] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

cleanup() {
  local rc=$? deadline
  set +e
  [ -n "$uploader" ] && kill "$uploader" 2>/dev/null && wait "$uploader" 2>/dev/null
  if [ "$deployed" = 1 ]; then
    if [ -n "${REDCLOUD_KEEP_LOGS:-}" ]; then
      mkdir -p "$REDCLOUD_KEEP_LOGS"
      for s in controller chunkserver; do
        timeout 30 docker service logs --timestamps "${stack}_$s" >"$REDCLOUD_KEEP_LOGS/$s.log" 2>&1
      done
    fi
    if [ "$rc" != 0 ]; then
      echo "--- service tasks at the failure:" >&2
      docker stack ps --no-trunc --format '{{.Name}} {{.CurrentState}} {{.Error}}' "$stack" 2>&1 | head -40 >&2
    fi
    docker stack rm "$stack" >/dev/null 2>&1
  fi
  docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null 2>&1
  # Task containers go away shortly after the services; their volumes and the network
  # only then.
  deadline=$((SECONDS + 90))
  while [ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$stack")" ] && [ $SECONDS -lt $deadline ]; do
    sleep 1
  done
  docker ps -aq --filter "label=com.docker.stack.namespace=$stack" | xargs -r docker rm -f >/dev/null 2>&1
  docker volume ls -q --filter "label=com.docker.stack.namespace=$stack" | xargs -r docker volume rm >/dev/null 2>&1
  until ! docker network inspect "$net" >/dev/null 2>&1 || [ $SECONDS -ge $deadline ]; do sleep 1; done
  docker network rm "$net" >/dev/null 2>&1
  [ "$initialised" = 1 ] && docker swarm leave --force >/dev/null 2>&1
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != active ]; then
  if ! err=$(docker swarm init 2>&1) && ! err=$(docker swarm init --advertise-addr 127.0.0.1 2>&1); then
    echo "swarm-test: SKIPPED (docker swarm init failed: $err)"
    exit 0
  fi
  initialised=1
fi
[ "$(docker info -f '{{.Swarm.ControlAvailable}}')" = true ] || {
  echo "swarm-test: SKIPPED (this engine is in a swarm but not a manager: cannot deploy a stack)"
  exit 0
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }
export REDCLOUD_CLUSTER_SECRET REDCLOUD_GRPC_PORT REDCLOUD_HTTP_PORT
REDCLOUD_CLUSTER_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
REDCLOUD_GRPC_PORT=$(free_port)
REDCLOUD_HTTP_PORT=$(free_port)

# The CLI in a container on the stack's network; its login in $work/cli-config.
# CTL picks the controller (default: every controller task, through swarm's DNS).
cli() {
  timeout 120 docker run --rm --label "$label" --network "$net" -v "$books:/books:ro" -v "$work:/out" \
    -e XDG_CONFIG_HOME=/out/cli-config redcloud-controller:latest redcloud --controller "${CTL:-tasks.controller}" "$@"
}
# `cluster status` exits 10 when the cluster is degraded; its JSON is printed all the same.
status_json() { cli cluster status --json || [ $? -eq 10 ]; }
wait_for() { # seconds description command...
  local secs=$1 deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >"$work/wait.out" 2>&1; do
    [ -e "$work/fatal" ] && fail "$(cat "$work/fatal")"
    if [ $SECONDS -ge $deadline ]; then
      echo "--- last check:" >&2
      tail -5 "$work/wait.out" >&2
      fail "timed out after $secs s waiting until $what"
    fi
    sleep 1
  done
}
# Reads one `cluster status --json` on stdin; argv: n, "filled" or "any". Exits 0 if
# it lists exactly n controllers, all reachable, and n chunkservers, all healthy
# (and, for "filled", each holding every live chunk). Prints the controllers' gRPC
# addresses, then the digest, then the node ids, one a line; on failure, why.
judge() {
  python3 -c '
import json, sys
s = json.load(sys.stdin)
n, mode = int(sys.argv[1]), sys.argv[2]
ctl = s["controllers"]
cs = s["chunkservers"]
why = []
if len(ctl) != n or not all(c["reachable"] for c in ctl):
    why.append("controllers: %s" % [(c["node_id"], c["reachable"]) for c in ctl])
healthy = [c for c in cs if c["healthy"]]
if len(cs) != n or len(healthy) != n:
    why.append("chunkservers: %s" % [(c["node_id"], c["healthy"]) for c in cs])
if mode == "filled" and not all(c["chunk_count"] >= s["chunk_count"] for c in cs):
    why.append("chunks %d, held: %s" % (s["chunk_count"], [c["chunk_count"] for c in cs]))
if why:
    print("; ".join(why))
    sys.exit(1)
for c in ctl:
    print(c["grpc_address"])
print("digest", s["state_digest"])
for c in ctl + cs:
    print("id", c["node_id"])
' "$@"
}
# Every controller sees n controllers and n healthy chunkservers (filled, with
# "filled") and all report the same state digest. Leaves the addresses in
# $work/controllers and the node ids in $work/ids.
cluster_ok() { # n filled|any
  local out addr d0 d
  out=$(status_json | judge "$@") || { echo "$out"; return 1; }
  grep -v '^digest \|^id ' <<<"$out" >"$work/controllers"
  grep '^id ' <<<"$out" | sort >"$work/ids"
  while read -r addr; do
    out=$(CTL=$addr status_json | judge "$@") || { echo "$addr: $out"; return 1; }
    d=$(grep '^digest ' <<<"$out")
    d0=${d0:-$d}
    [ "$d" = "$d0" ] || { echo "$addr: $d, another: $d0"; return 1; }
  done <"$work/controllers"
}
service_running() { # service n: n tasks running
  [ "$(docker service ls --filter "name=${stack}_$1" --format '{{.Name}} {{.Replicas}}' | awk -v s="${stack}_$1" '$1 == s { print $2 }')" = "$2/$2" ]
}
update_state() { docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "${stack}_$1"; }
updated() { # service: its update has completed (a rollback or pause is fatal)
  local st
  st=$(update_state "$1")
  case "$st" in
    completed) return 0 ;;
    rollback_* | paused)
      echo "the update of $1 ended $st: $(docker service inspect -f '{{.UpdateStatus.Message}}' "${stack}_$1")" >"$work/fatal"
      return 1
      ;;
    *) echo "$1: ${st:-not started}"; return 1 ;;
  esac
}
both_running() { service_running controller "$1" && service_running chunkserver "$1"; }
both_updated() { updated controller && updated chunkserver; }
health_published() { curl -fsS --max-time 3 "http://127.0.0.1:$REDCLOUD_HTTP_PORT/health"; }
status_published() { # cluster status through the routing mesh, from the host's network
  timeout 60 docker run --rm --label "$label" --network host redcloud-controller:latest \
    redcloud --controller "127.0.0.1:$REDCLOUD_GRPC_PORT" cluster status --json >"$work/published.json" || [ $? -eq 10 ]
}
record() { # file name: an acknowledged upload of the file in $work as name
  echo "$2 $(sha256sum <"$work/$1" | cut -d' ' -f1)" >>"$work/acked"
}

t=$SECONDS
step "docker stack deploy $stack: 3 controllers + 3 chunkservers, found through tasks.controller"
docker stack deploy -c deploy/swarm/stack.yml "$stack" >"$work/deploy.out" 2>&1 || { cat "$work/deploy.out" >&2; fail "docker stack deploy failed"; }
deployed=1
wait_for 120 "3 controller tasks and 3 chunkserver tasks run" both_running 3
wait_for 120 "every controller sees 3 controllers and 3 healthy chunkservers" cluster_ok 3 any
t_deploy=$((SECONDS - t))
echo "    healthy $t_deploy s after the deploy"

step "the published ports (routing mesh): /health on $REDCLOUD_HTTP_PORT, gRPC on $REDCLOUD_GRPC_PORT"
# Swarm's routing mesh needs the kernel's IPVS (ip_vs); without it no published port
# of any swarm service answers, and the check is skipped with a message.
mesh="checked (/health and cluster status)"
if [ ! -d /proc/sys/net/ipv4/vs ] && ! health_published >/dev/null 2>&1; then
  mesh="not checked (no IPVS (ip_vs) in this kernel, which swarm's routing mesh needs)"
  echo "    SKIPPED: $mesh"
else
  wait_for 60 "/health answers on 127.0.0.1:$REDCLOUD_HTTP_PORT" health_published
  wait_for 60 "cluster status answers on 127.0.0.1:$REDCLOUD_GRPC_PORT" status_published
  python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); assert len(s["controllers"]) == 3, s["controllers"]' \
    "$work/published.json" || fail "cluster status through the published port does not list 3 controllers"
fi

step "an account, and books uploaded through tasks.controller"
echo tester-password | timeout 60 docker run --rm -i --label "$label" --network "$net" -v "$work:/out" \
  -e XDG_CONFIG_HOME=/out/cli-config redcloud-controller:latest \
  redcloud --controller tasks.controller register tester --password-stdin >/dev/null
# Twelve books of middling size (a few chunks each at most).
mapfile -t first < <(ls -S "$books" | sed -n '40,51p')
cli upload "${first[@]/#//books/}" >/dev/null || fail "uploading ${#first[@]} books failed"
for f in "${first[@]}"; do cp "$books/$f" "$work/$f"; record "$f" "$f"; done

t=$SECONDS
step "docker service scale controller=5 chunkserver=5"
docker service scale --detach "${stack}_controller=5" "${stack}_chunkserver=5" >/dev/null 2>&1
wait_for 180 "every controller sees 5 controllers, 5 healthy chunkservers each holding every chunk" cluster_ok 5 filled
t_scale=$((SECONDS - t))
ids_before=$(cat "$work/ids")
echo "    5 + 5, converged and filled $t_scale s after the scale"

t=$SECONDS
step "rolling update of both services (every task replaced) while a client uploads without pause"
# Unique bytes per upload: a counter line, then a small book.
mapfile -t small < <(ls -S "$books" | tail -30)
upload_loop() {
  local i=0 f rc
  while [ ! -e "$work/stop" ]; do
    i=$((i + 1))
    f=roll-$i.txt
    { echo "upload $i during the rolling update of $stack"; cat "$books/${small[$((i % ${#small[@]}))]}"; } >"$work/$f"
    rc=0
    cli upload "/out/$f" >/dev/null 2>"$work/$f.err" || rc=$?
    if [ $rc = 0 ]; then record "$f" "$f"; else echo "$f exit $rc: $(tail -1 "$work/$f.err")" >>"$work/failed"; fi
  done
}
running_tasks() { docker service ps -q --filter desired-state=running "${stack}_controller" "${stack}_chunkserver" | sort; }
tasks_before=$(running_tasks)
touch "$work/acked" "$work/failed"
acked_before=$(wc -l <"$work/acked")
upload_loop &
uploader=$!
sleep 3
docker service update --detach --force "${stack}_controller" >/dev/null 2>&1
docker service update --detach --force "${stack}_chunkserver" >/dev/null 2>&1
wait_for 420 "both rolling updates complete" both_updated
t_update=$((SECONDS - t))
touch "$work/stop"
wait "$uploader" || true
uploader=
during=$(($(wc -l <"$work/acked") - acked_before))
failed=$(wc -l <"$work/failed")
echo "    updated in $t_update s; uploads during it: $during acknowledged, $failed failed"
[ "$failed" = 0 ] || sed 's/^/      /' "$work/failed" | head -10
[ "$during" -ge 5 ] || fail "only $during uploads were acknowledged during the update"

t=$SECONDS
step "after the update: 5 + 5 with the same node ids, converged, every chunkserver filled"
wait_for 180 "every controller sees 5 controllers, 5 healthy chunkservers each holding every chunk" cluster_ok 5 filled
t_settle=$((SECONDS - t))
ids_after=$(cat "$work/ids")
kept=$(comm -12 <(echo "$tasks_before") <(running_tasks) | wc -l)
[ "$kept" = 0 ] || fail "$kept tasks were not replaced by the update"
[ "$ids_before" = "$ids_after" ] || fail "the node ids changed across the update (a slot did not keep its volume):
$(diff <(echo "$ids_before") <(echo "$ids_after"))"
[ "$(sort -u "$work/ids" | wc -l)" = 10 ] || fail "two tasks share a node id: $(cat "$work/ids")"

t=$SECONDS
total=$(wc -l <"$work/acked")
step "every acknowledged upload ($total) downloads byte-identical from every controller"
mapfile -t names < <(cut -d' ' -f1 "$work/acked")
n=0
while read -r addr; do
  n=$((n + 1))
  dir=$work/from-$n
  mkdir -m 777 "$dir"
  CTL=$addr cli download "${names[@]}" -o "/out/from-$n" >/dev/null || fail "downloading from $addr failed"
  while read -r name sum; do
    [ "$(sha256sum <"$dir/$name" | cut -d' ' -f1)" = "$sum" ] || fail "$name from $addr differs from what was uploaded"
  done <"$work/acked"
done <"$work/controllers"
t_verify=$((SECONDS - t))

echo "swarm-test: passed in $((SECONDS - started)) s: healthy ${t_deploy} s after the deploy;" \
  "5 + 5 filled ${t_scale} s after the scale; rolling update of 10 tasks ${t_update} s" \
  "(+${t_settle} s until filled and converged) with $during uploads acknowledged and $failed failed during it;" \
  "$total acknowledged uploads verified on $n controllers in ${t_verify} s; published ports: $mesh"
