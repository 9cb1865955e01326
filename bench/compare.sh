#!/usr/bin/env bash
# compare.sh: coco side by side with what a user would pick instead, in one
# run on one machine, with the same durability (issue 7):
#
#   1. plain durable writes: coco's logging app on a 3-node sandbox vs a
#      3-member etcd cluster (fsync on), and vs the HTTPS ceiling (a trivial
#      in-memory HTTPS server: no consensus, no ledger), for each value size
#      and client count;
#   2. ERC-20 transfers through eth JSON-RPC: coco 3-node vs a go-ethereum
#      dev chain (benchpeers geth: the simulated backend over HTTP, coco's
#      fork, a block every 100 ms) vs ganache, with the same workload;
#   3. SmallBank on coco, and single-core ecrecover/s and P-256 verify/s.
#
# It builds coco and benchpeers, installs etcd (Debian) and ganache (npm) if
# missing, starts and stops every system itself, and ends with the table and
# one line per ratio (`coco bench report`). Run from the repository root:
#
#   bench/compare.sh                     # about 6 minutes
#   COMPARE_DURATION=5s bench/compare.sh # shorter, noisier
#
# Knobs (environment): COMPARE_DURATION (10s), COMPARE_WARMUP (2s),
# COMPARE_CLIENTS ("64 256"), COMPARE_SIZES ("100 1024"), COMPARE_ACCOUNTS
# (64), COMPARE_BATCH (10, transfers per JSON-RPC batch), COMPARE_OUT (the
# figures file; default in the work directory), COMPARE_DIR (work directory,
# on a real disk; default under /var/tmp). Systems are measured one at a time:
# for writes, etcd, coco and the ceiling take turns for each size and client
# count (the others idle meanwhile); each peer chain runs only while it is
# measured.
set -euo pipefail

duration=${COMPARE_DURATION:-10s}
warmup=${COMPARE_WARMUP:-2s}
clients=${COMPARE_CLIENTS:-64 256}
sizes=${COMPARE_SIZES:-100 1024}
accounts=${COMPARE_ACCOUNTS:-64}
batch=${COMPARE_BATCH:-10}

root=$(cd "$(dirname "$0")/.." && pwd)
work=${COMPARE_DIR:-$(mktemp -d /var/tmp/coco-compare.XXXXXX)}
mkdir -p "$work"
figs=${COMPARE_OUT:-$work/figures.json}
: >"$figs"
bin=$work/bin

# A well-known development key (the first account of Hardhat's test
# mnemonic); the peer chains fund it at genesis. Never use it elsewhere.
devkey=ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
devaddr=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266

log() { echo "compare: $*" >&2; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -e "$work/etcd/etcd-cluster.members" ] && "$root/bench/etcd-cluster.sh" stop "$work/etcd" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# wait_for FILE TEXT SECONDS PID: until FILE holds TEXT, or fail if PID exits.
wait_for() {
  local file=$1 text=$2 deadline=$((SECONDS + $3)) pid=$4
  until grep -q "$text" "$file" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "process $pid exited; $file ends with:"
      tail -n 20 "$file" >&2
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out waiting for '$text' in $file"
      exit 1
    fi
    sleep 0.2
  done
}

stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# start_sandbox NAME: a new 3-node coco sandbox in $work/NAME (its
# description in $work/NAME/sandbox.json); sets $sandbox to its pid.
start_sandbox() {
  log "starting coco's 3-node sandbox ($1)"
  "$bin/coco" sandbox --dir "$work/$1" >"$work/$1.log" 2>&1 &
  sandbox=$!
  pids+=("$sandbox")
  wait_for "$work/$1.log" "Ctrl-C" 120 "$sandbox"
}

log "work directory $work; figures in $figs"
log "building coco and benchpeers"
(cd "$root" && go build -o "$bin/coco" ./cmd/coco && go build -o "$bin/benchpeers" ./cmd/benchpeers)

if ! command -v npm >/dev/null 2>&1; then
  log "installing nodejs and npm (for ganache)"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq nodejs npm >&2
  else sudo apt-get update -qq && sudo apt-get install -y -qq nodejs npm >&2; fi
fi
log "installing ganache (bench/ganache, as locked)"
(cd "$root/bench/ganache" && npm ci --no-audit --no-fund --loglevel=error >&2)

# --- 1. plain durable writes: etcd, coco and the HTTPS ceiling, in turn ---
# The three run one after the other for each size and client count, while
# the other two idle, so that the machine's drift over the minutes of a run
# (it is shared) does not fall on one side of a ratio.
log "starting the 3-member etcd cluster"
endpoints=$("$root/bench/etcd-cluster.sh" start "$work/etcd" 23790)
# Writes go straight to the leader, as coco's go to the primary: neither
# side pays for forwarding.
leader=$(ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint status -w json | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    s = e["Status"]
    if s["header"]["member_id"] == s["leader"]:
        print(e["Endpoint"])
')
[ -n "$leader" ] || { log "no etcd leader among $endpoints"; exit 1; }
log "etcd leader: $leader"

# --- coco: a 3-node sandbox, the default ---
start_sandbox sandbox
sb=$work/sandbox/sandbox.json

for size in $sizes; do
  for c in $clients; do
    log "writes: ${size} B, $c clients: etcd"
    "$bin/benchpeers" etcd --endpoints "$leader" --clients "$c" --value-size "$size" \
      --duration "$duration" --warmup "$warmup" --json "$figs"
    log "writes: ${size} B, $c clients: coco"
    "$bin/coco" bench log --sandbox "$sb" --clients "$c" --msg-size "$size" \
      --duration "$duration" --warmup "$warmup" --json "$figs"
    log "writes: ${size} B, $c clients: https ceiling"
    "$bin/coco" bench ceiling --clients "$c" --msg-size "$size" \
      --duration "$duration" --warmup "$warmup" --json "$figs"
  done
done
"$root/bench/etcd-cluster.sh" stop "$work/etcd" >/dev/null

# --- 3. SmallBank on coco ---
log "smallbank: coco"
"$bin/coco" bench smallbank --sandbox "$sb" --clients 64 \
  --duration "$duration" --warmup "$warmup" --json "$figs"

stop_pid "$sandbox"

# --- 2. ERC-20 transfers ---
# On a new sandbox, as each peer chain below starts new for its run: the
# service that took the writes and SmallBank above holds their state (a
# larger heap and ledger), and measured 15-30% fewer transfers/s.
start_sandbox sandbox-erc20
log "erc20: coco ($accounts accounts, batch $batch)"
"$bin/coco" bench erc20 --sandbox "$work/sandbox-erc20/sandbox.json" --accounts "$accounts" --batch "$batch" \
  --duration "$duration" --warmup "$warmup" --json "$figs"
stop_pid "$sandbox"

log "erc20: geth dev chain"
"$bin/benchpeers" geth --fund "$devaddr" --datadir "$work/geth" >"$work/geth.url" 2>"$work/geth.log" &
geth=$!
pids+=("$geth")
wait_for "$work/geth.url" "http://" 60 "$geth"
"$bin/coco" bench erc20 --peer "$(head -n 1 "$work/geth.url")" --dev-key "$devkey" --system geth-sim \
  --accounts "$accounts" --batch "$batch" --duration "$duration" --warmup "$warmup" --json "$figs"
stop_pid "$geth"

log "erc20: ganache"
ganache_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$root/bench/ganache" && exec node_modules/.bin/ganache --chain.chainId 1337 --chain.hardfork shanghai \
  --wallet.accounts "0x$devkey,0x33b2e3c9fd0803ce8000000" --server.host 127.0.0.1 --server.port "$ganache_port" \
  --miner.blockGasLimit 0x77359400 --database.dbPath "$work/ganache" --logging.quiet) >"$work/ganache.log" 2>&1 &
ganache=$!
pids+=("$ganache")
wait_for "$work/ganache.log" "RPC Listening" 60 "$ganache"
# ganache knows no fork after Shanghai: the same token, compiled for it. It
# commits ~100 transfers/s, so a low --max-rate saves signing time.
"$bin/coco" bench erc20 --peer "http://127.0.0.1:$ganache_port" --dev-key "$devkey" --system ganache \
  --token-evm shanghai --max-rate 5000 \
  --accounts "$accounts" --batch "$batch" --duration "$duration" --warmup "$warmup" --json "$figs"
stop_pid "$ganache"

# --- the limits: one core ---
log "single-core ecrecover and P-256 verify"
"$bin/coco" bench crypto --json "$figs"

echo
echo "## coco compared ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; figures in $figs)"
echo
"$bin/coco" bench report "$figs"
