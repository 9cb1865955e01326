#!/usr/bin/env bash
# cpu.sh: CPU time per operation of every process of a benchmark run, the
# figure docs/performance.md uses to say what a throughput goal needs.
#
#   bench/cpu.sh SANDBOX_DIR COCO bench log|erc20|smallbank [flags...]
#
# Runs the bench command (COCO is the coco binary; --sandbox is added) on the sandbox in
# SANDBOX_DIR, samples the CPU time (utime+stime in /proc) of each node
# listed in its sandbox.json and of the bench process once a second, and
# prints, for the steady part of the run (the last --duration seconds,
# minus 1 s at the start and 2 s at the end, so setup such as bench
# erc20's account registration is left out), each process's CPU in ms per
# second and in us per operation, using the rate the bench reported.
# Linux only; nothing else may run on the machine meanwhile.
set -euo pipefail

if [[ $# -lt 3 ]]; then
	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
fi
sb=$1
shift
[[ -f $sb/sandbox.json ]] || { echo "cpu.sh: $sb/sandbox.json not found" >&2; exit 2; }

duration=10
prev=
for a in "$@"; do
	case $a in
	--duration=*) duration=${a#--duration=} ;;
	esac
	if [[ $prev == --duration ]]; then duration=$a; fi
	prev=$a
done
duration=${duration%s}
if ! [[ $duration =~ ^[0-9]+$ ]] || ((duration < 5)); then
	echo "cpu.sh: give --duration in whole seconds, at least 5s (got $duration)" >&2
	exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mapfile -t pids < <(grep -o '"pid": *[0-9]*' "$sb/sandbox.json" | grep -o '[0-9]*$')

"$@" --sandbox "$sb" --json "$tmp/figure.json" >"$tmp/out" 2>&1 &
bench=$!
ticks() {
	local p
	printf '%s' "$(date +%s.%N)"
	for p in "${pids[@]}" "$bench"; do
		printf ' %s' "$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo x)"
	done
	echo
}
while kill -0 "$bench" 2>/dev/null; do
	ticks >>"$tmp/ticks"
	sleep 1
done
status=0
wait "$bench" || status=$?
cat "$tmp/out"
if ((status != 0)); then
	echo "cpu.sh: the bench command failed (exit $status)" >&2
	exit "$status"
fi
rate=$(grep -o '"per_sec":[0-9.]*' "$tmp/figure.json" | tail -1 | cut -d: -f2)
hz=$(getconf CLK_TCK)
names=()
for i in "${!pids[@]}"; do names+=("node$i (pid ${pids[i]})"); done
names+=("bench client")
awk -v d="$duration" -v rate="$rate" -v hz="$hz" -v names="$(IFS='|'; echo "${names[*]}")" '
{ t[NR] = $1; for (i = 2; i <= NF; i++) v[NR, i] = $i; nf = NF }
END {
	split(names, nm, "|")
	end = t[NR]
	for (r = 1; r <= NR; r++) if (t[r] >= end - d + 1) { a = r; break }
	for (r = NR; r >= 1; r--) if (t[r] <= end - 2) { b = r; break }
	if (!a || !b || t[b] - t[a] < 2) { print "cpu.sh: run too short to sample" > "/dev/stderr"; exit 1 }
	w = t[b] - t[a]
	printf "steady window %.1f s at %s ops/s\n", w, rate
	printf "| process | CPU ms/s | CPU us/op |\n|---|---:|---:|\n"
	total = 0
	for (i = 2; i <= nf; i++) {
		if (v[a, i] == "x" || v[b, i] == "x") { printf "| %s | - | - |\n", nm[i-1]; continue }
		ms = (v[b, i] - v[a, i]) * 1000 / hz / w
		total += ms
		printf "| %s | %.0f | %.1f |\n", nm[i-1], ms, ms * 1000 / rate
	}
	printf "| all | %.0f | %.1f |\n", total, total * 1000 / rate
}' "$tmp/ticks"
