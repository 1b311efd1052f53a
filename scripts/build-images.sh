#!/usr/bin/env bash
# Builds the RedCloud images: redcloud-controller (with the `redcloud` CLI),
# redcloud-chunkserver, and redcloud-cli (the CLI alone, its entrypoint), with the
# plain `docker build -f Dockerfile.<role>`.
#
# The Dockerfiles start from `rust:1.95-bookworm`. Where the Docker engine cannot
# pull images (as on our build machines), this script first makes a local image of
# that name: a minimal Debian (debootstrap, from Debian packages) with gcc and
# musl-tools, this machine's Rust toolchain (with the musl target) and this
# machine's trusted CA certificates. With a registry, nothing is made locally.
#
#   scripts/build-images.sh          # build both images
#   REDCLOUD_LOCAL_BASE=1 scripts/build-images.sh   # always make the local base
set -euo pipefail
cd "$(dirname "$0")/.."

base=rust:1.95-bookworm
need_local_base() {
  [ "${REDCLOUD_LOCAL_BASE:-0}" = 1 ] && return 0
  docker image inspect "$base" >/dev/null 2>&1 && return 1
  if timeout 60 docker pull "$base" >/dev/null 2>&1; then return 1; fi
  return 0
}

make_local_base() {
  echo "==> making a local $base from Debian packages and this machine's Rust toolchain"
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
  command -v rustup >/dev/null && rustup target add x86_64-unknown-linux-musl
  local sysroot root
  sysroot=$(rustc --print sysroot)
  [ -d "$sysroot/lib/rustlib/x86_64-unknown-linux-musl" ] || {
    echo "error: the Rust toolchain at $sysroot lacks the x86_64-unknown-linux-musl target" >&2
    exit 1
  }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' RETURN
  debootstrap --variant=minbase --include=gcc,libc6-dev,musl-tools,ca-certificates \
    bookworm "$root" http://deb.debian.org/debian >/dev/null
  cp -a "$sysroot/bin/." "$root/usr/local/bin/"
  cp -a "$sysroot/lib/." "$root/usr/local/lib/"
  # Trust what this machine trusts (e.g. a TLS-inspecting egress proxy's CA).
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$base" >/dev/null
}

if need_local_base; then make_local_base; fi
# Both images are built from one snapshot of the source (a tar of the build context,
# as `docker build .` would send it), so the second build reuses the first's compile
# layer even if files change in between.
ctx=$(mktemp)
trap 'rm -f "$ctx"' EXIT
# What .dockerignore leaves out, at least the large parts: the fuzz crate's build
# and corpus (gigabytes after scripts/fuzz.sh) would otherwise go to the daemon.
tar -cf "$ctx" --exclude=./target --exclude=./.git --exclude=./redcloud-data \
  --exclude=./fuzz/target --exclude=./fuzz/corpus --exclude=./fuzz/artifacts --exclude=./fuzz/coverage .
for role in controller chunkserver; do
  echo "==> docker build -f Dockerfile.$role -t redcloud-$role ."
  docker build -f "Dockerfile.$role" -t "redcloud-$role" - <"$ctx"
done
# The CLI on its own (`docker run ... redcloud-cli:latest upload book.txt`): the
# `cli` stage of Dockerfile.controller, from the same compile layer.
echo "==> docker build -f Dockerfile.controller --target cli -t redcloud-cli ."
docker build -f Dockerfile.controller --target cli -t redcloud-cli - <"$ctx"
docker images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^redcloud-'
