#!/usr/bin/env bash
# etcd-cluster.sh: the 3-member etcd cluster that coco's plain durable
# writes are compared with (bench/compare.sh, `benchpeers etcd`).
#
#   bench/etcd-cluster.sh start DIR [BASEPORT]   start it, print the client endpoints
#   bench/etcd-cluster.sh stop DIR               stop it and remove DIR
#
# Members m0..m2 listen on 127.0.0.1 only: member k serves clients on
# BASEPORT+2k and peers on BASEPORT+2k+1 (BASEPORT defaults to 2379, so m0
# has etcd's usual ports and `benchpeers etcd` finds the cluster with its
# default --endpoints). Each member has its own data dir DIR/mK, its log in
# DIR/mK.log and its pid in DIR/mK.pid. fsync is etcd's default (on: no
# --unsafe-no-fsync), so an acknowledged Put is on the disk of a majority,
# as a committed write of coco is; keep DIR on a real disk, not a tmpfs.
#
# Client and peer URLs are plain HTTP: this cluster is only a baseline on
# the loopback interface, and TLS would add a cost coco pays (its clients
# speak TLS) without changing what is compared most, the durable commit.
#
# etcd comes from Debian's etcd-server package and etcdctl from etcd-client,
# installed if either is not on PATH. start prints the endpoints,
# comma-separated, as the only line on stdout:
# `benchpeers etcd --endpoints "$(bench/etcd-cluster.sh start DIR)"`.
set -euo pipefail

members=3
marker=etcd-cluster.members

usage() {
  echo "usage: $0 start DIR [BASEPORT] | stop DIR" >&2
  exit 2
}

log() { echo "etcd-cluster: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_etcd installs etcd and etcdctl (compare.sh asks etcdctl for the
# leader) unless both are on PATH: a machine may have etcd-server alone.
ensure_etcd() {
  command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1 && return
  log "installing etcd-server and etcd-client (for etcdctl) from Debian"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >&2
  local cmd
  for cmd in etcd etcdctl; do
    command -v "$cmd" >/dev/null 2>&1 || { log "$cmd is still not on PATH"; exit 1; }
  done
}

# healthy URL: whether the member serving clients at URL reports health.
healthy() {
  if command -v etcdctl >/dev/null 2>&1; then
    ETCDCTL_API=3 etcdctl --endpoints="$1" --command-timeout=2s endpoint health >/dev/null 2>&1
  else
    curl -fsS --max-time 2 "$1/health" 2>/dev/null | grep -q '"health":"true"'
  fi
}

stop_members() {
  local dir=$1 pid pids=()
  for f in "$dir"/m*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null && pids+=("$pid")
  done
  # Give them 10 s to exit cleanly, then kill what is left.
  for _ in $(seq 100); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && return
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}

start() {
  local dir=$1 base=${2:-2379}
  [[ "$base" =~ ^[0-9]+$ ]] && [ "$base" -ge 1024 ] && [ "$base" -le $((65535 - 2 * members)) ] ||
    { log "BASEPORT must be a number in [1024, $((65535 - 2 * members))], got '$base'"; exit 2; }
  if [ -e "$dir/$marker" ]; then
    log "$dir already holds a cluster: run '$0 stop $dir' first"
    exit 1
  fi
  ensure_etcd
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(stat -f -c %T "$dir")" = tmpfs ]; then
    log "warning: $dir is on a tmpfs, where fsync costs nothing: the figures will flatter etcd"
  fi
  if [ "$(uname -m)" = aarch64 ]; then
    export ETCD_UNSUPPORTED_ARCH=arm64 # etcd 3.4 refuses arm64 without it
  fi

  local cluster="" endpoints="" k
  for ((k = 0; k < members; k++)); do
    cluster+="${cluster:+,}m$k=http://127.0.0.1:$((base + 2 * k + 1))"
    endpoints+="${endpoints:+,}127.0.0.1:$((base + 2 * k))"
  done
  echo "$endpoints" >"$dir/$marker"

  for ((k = 0; k < members; k++)); do
    local client="http://127.0.0.1:$((base + 2 * k))" peer="http://127.0.0.1:$((base + 2 * k + 1))"
    # setsid: the members outlive this script and a Ctrl-C in its terminal.
    setsid etcd --name "m$k" --data-dir "$dir/m$k" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "coco-bench-$base" \
      --logger zap --log-level warn \
      </dev/null >"$dir/m$k.log" 2>&1 &
    echo $! >"$dir/m$k.pid"
  done

  # Wait (30 s at most) for every member to be healthy, i.e. the cluster
  # to have a leader and every member to serve requests.
  local deadline=$((SECONDS + 30)) ok
  while :; do
    ok=0
    for ((k = 0; k < members; k++)); do
      if ! kill -0 "$(cat "$dir/m$k.pid")" 2>/dev/null; then
        log "member m$k exited; its log ($dir/m$k.log) ends with:"
        tail -n 20 "$dir/m$k.log" >&2
        stop_members "$dir"
        exit 1
      fi
      healthy "http://127.0.0.1:$((base + 2 * k))" && ok=$((ok + 1))
    done
    [ "$ok" -eq "$members" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "cluster not healthy after 30 s ($ok of $members members); logs in $dir"
      stop_members "$dir"
      exit 1
    fi
    sleep 0.2
  done
  log "$members members healthy ($(etcd --version | head -n 1)); data in $dir"
  echo "$endpoints"
}

stop() {
  local dir=$1
  if [ ! -e "$dir/$marker" ]; then
    # Refuse to remove a directory this script did not make.
    log "$dir holds no cluster started by $0"
    exit 1
  fi
  stop_members "$dir"
  rm -rf "$dir"
  log "stopped; removed $dir"
}

case "${1:-}" in
start) [ $# -ge 2 ] && [ $# -le 3 ] || usage; start "$2" "${3:-}" ;;
stop) [ $# -eq 2 ] || usage; stop "$2" ;;
*) usage ;;
esac
