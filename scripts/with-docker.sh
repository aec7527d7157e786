#!/usr/bin/env bash
# Runs a command with what the container tests need: Debian's docker.io,
# debootstrap and mmdebstrap installed, and dockerd running. Starts dockerd only if none
# answers, and stops the one it started when the command ends.
set -euo pipefail

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
# mmdebstrap makes the Ubuntu base images: Debian 12's debootstrap has no noble script.
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
# unzip: the kubelogin stage's own tool (a devvm has it from packages.txt), run by its tests here.
command -v unzip >/dev/null || need+=(unzip)
if [ ${#need[@]} -gt 0 ]; then
  echo "with-docker: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

started=""
if ! docker info >/dev/null 2>&1; then
  echo "with-docker: starting dockerd (log: /tmp/devvm-dockerd.log)" >&2
  dockerd >/tmp/devvm-dockerd.log 2>&1 &
  started=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "with-docker: dockerd did not start; see /tmp/devvm-dockerd.log" >&2; tail -20 /tmp/devvm-dockerd.log >&2; exit 1; }
fi
stop() {
  if [ -n "$started" ]; then
    kill "$started" 2>/dev/null || true
    wait "$started" 2>/dev/null || true
  fi
}
trap stop EXIT

# No registry is reachable here, so testcontainers' reaper image cannot be
# pulled; the tests remove their own containers.
export TESTCONTAINERS_RYUK_DISABLED=true
"$@"
