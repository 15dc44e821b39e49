#!/usr/bin/env bash
# The benchmark suite.  Each case compares a contender with a baseline in the
# same run on the same throw-away cluster, repeats both (alternating), and
# prints medians and the ratio.  Results are also appended, as a Markdown
# table, to test/bench/results/latest.md.
#
#   bash test/bench/run.sh                 every case in test/bench/cases/
#   bash test/bench/run.sh stitching       cases whose file name contains "stitching"
#   BENCH_REPEAT=7 BENCH_EVENTS=1000000 bash test/bench/run.sh
#   BENCH_HUGE_PAGES=off bash test/bench/run.sh    without huge pages
#
# Works as root on a fresh Debian 12 machine like the other scripts.  Not part
# of CI: these machines are noisy, so quote medians and ratios.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

export BENCH_REPEAT=${BENCH_REPEAT:-5}
export BENCH_EVENTS=${BENCH_EVENTS:-1000000}
export PGOPTIONS="-c client_min_messages=warning"
PORT=${BENCH_PORT:-54339}
DIR=$(mktemp -d /tmp/cdp_traits-bench.XXXXXX)
RESULTS="$REPO/test/bench/results"
mkdir -p "$RESULTS"
OUT="$RESULTS/latest.md"

ensure_deps
build_install

# Huge pages (BENCH_HUGE_PAGES=on, the default): the cluster's shared
# buffers on 2 MB pages, as PostgreSQL's documentation advises for a buffer
# pool this large.  Without them every new backend and parallel worker takes
# a page fault on its first touch of each 4 kB of shared memory, which on
# these virtual machines costs about 10 us each (see BENCHMARKS.md).  The
# pages are reserved for the run and given back when it ends; where that is
# not possible (not root, not enough memory) the run says so and goes on
# without them.  BENCH_HUGE_PAGES=off measures the server's defaults.
BUFFERS_MB=2048
HUGE=off
if [ "${BENCH_HUGE_PAGES:-on}" = on ]; then
	hp_was=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo)
	# the buffers in 2 MB pages, plus the rest of shared memory (37 pages
	# with these settings, says postgres -C shared_memory_size_in_huge_pages)
	hp_want=$(( ${hp_was:-0} + BUFFERS_MB / 2 + 100 ))
	if [ -n "$hp_was" ] && echo "$hp_want" 2>/dev/null >/proc/sys/vm/nr_hugepages &&
		[ "$(cat /proc/sys/vm/nr_hugepages)" -ge "$hp_want" ]; then
		HUGE=on
		CLUSTER_AFTER_STOP="echo $hp_was >/proc/sys/vm/nr_hugepages"
	else
		[ -n "$hp_was" ] && echo "$hp_was" 2>/dev/null >/proc/sys/vm/nr_hugepages || true
		say "huge pages: could not reserve $hp_want (have $(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo none)); running without"
	fi
fi
start_cluster "$DIR" "$PORT" "huge_pages = $HUGE
shared_buffers = ${BUFFERS_MB}MB
work_mem = 64MB
maintenance_work_mem = 1GB
max_wal_size = 16GB
checkpoint_timeout = 30min
max_connections = 50"
cp "$REPO/test/gen/cdp_gen.sql" "$DIR/"
chown postgres: "$DIR/cdp_gen.sql"
as_postgres createdb -h "$DIR" -p "$PORT" bench

# sql ARGS...: run statements in the bench database (quiet, stop on error),
# from -c options or from stdin.  Under time_ms (BENCH_TIMING_FILE set) psql
# also times each statement, and the times go to that file.
sql() {
	local timing=() a from_stdin=yes
	if [ -n "${BENCH_TIMING_FILE:-}" ]; then
		# (with \timing as a -c option psql reads stdin only if told to)
		timing=(-c '\timing on')
		for a; do [[ $a == -[cf]* ]] && from_stdin=; done
		[ -n "$from_stdin" ] && set -- "$@" -f -
	fi
	as_postgres psql -h "$DIR" -p "$PORT" -d bench -X -q -v ON_ERROR_STOP=1 -At "${timing[@]}" "$@" |
		awk -v f="${BENCH_TIMING_FILE:-}" 'f != "" && /^Time: [0-9.]+ ms/ { print $2 >>f; next } { print }'
	return "${PIPESTATUS[0]}"
}
export -f sql as_postgres
export DIR PORT

# now_ns: a monotonic-enough clock in nanoseconds
now_ns() { date +%s%N; }

# median of the arguments (numbers)
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# time_ms CMD...: run a command, print its time in milliseconds: the sum of
# the times of the statements it runs through sql, as psql's \timing gives
# them (from sending each statement to its result, on the new connection the
# command opens), or its wall time if it runs none.  The wall time would
# also count starting runuser, psql and the connection, about 90 ms each time
# on these machines, which is none of the contender's or the baseline's work
# (see BENCHMARKS.md, "How the cases are timed").
time_ms() {
	local t0 t1 f
	f=$(mktemp)
	t0=$(now_ns)
	BENCH_TIMING_FILE=$f "$@" >/dev/null
	t1=$(now_ns)
	if [ -s "$f" ]; then
		awk '{ s += $1 } END { printf "%d\n", s + 0.5 }' "$f"
	else
		echo $(((t1 - t0) / 1000000))
	fi
	rm -f "$f"
}

# compare NAME BASE_LABEL BASE_FN CONT_LABEL CONT_FN [RESET_FN] [TARGET]
#   Runs BASE_FN and CONT_FN BENCH_REPEAT times each, alternating, RESET_FN
#   (untimed) before each run; prints medians and contender/baseline ratio.
#   TARGET is free text describing the goal (e.g. "<= 2x").
compare() {
	local name=$1 blabel=$2 bfn=$3 clabel=$4 cfn=$5 reset=${6:-} target=${7:-}
	local b=() c=() i mb mc ratio
	for ((i = 0; i < BENCH_REPEAT; i++)); do
		[ -n "$reset" ] && $reset >/dev/null
		b+=("$(time_ms $bfn)")
		[ -n "$reset" ] && $reset >/dev/null
		c+=("$(time_ms $cfn)")
	done
	mb=$(median "${b[@]}")
	mc=$(median "${c[@]}")
	ratio=$(awk -v b="$mb" -v c="$mc" 'BEGIN { if (c > 0) printf "%.2f", b / c; else print "inf" }')
	printf '%-44s baseline %-38s %9.0f ms | contender %-30s %9.0f ms | baseline/contender %6sx %s\n' \
		"$name" "$blabel" "$mb" "$clabel" "$mc" "$ratio" "${target:+(target $target)}"
	printf '| %s | %s | %.0f | %s | %.0f | %s | %s | %s / %s |\n' "$name" "$blabel" "$mb" "$clabel" "$mc" \
		"$ratio" "${target:--}" "${b[*]}" "${c[*]}" >>"$OUT"
}

# report NAME VALUE: a figure that is not a comparison (memory, throughput)
report() {
	printf '%-44s %s\n' "$1" "$2"
	printf '| %s | %s |\n' "$1" "$2" >>"$OUT"
}
export -f compare report time_ms median now_ns
export OUT

{
	echo
	echo "## Run of $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), BENCH_EVENTS=$BENCH_EVENTS, BENCH_REPEAT=$BENCH_REPEAT, huge pages $HUGE"
	echo
	echo "| case | baseline | median ms | contender | median ms | baseline/contender | target | all runs (ms) |"
	echo "|---|---|---|---|---|---|---|---|"
} >>"$OUT"

filter=${1:-}
for case_file in "$REPO"/test/bench/cases/*.sh; do
	[ -n "$filter" ] && [[ "$(basename "$case_file")" != *"$filter"* ]] && continue
	say "case $(basename "$case_file" .sh)"
	# shellcheck disable=SC1090
	source "$case_file"
done
say "results appended to $OUT"
