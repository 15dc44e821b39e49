#!/usr/bin/env bash
# Runs the whole test suite: pg_regress suites, isolation specs and TAP tests,
# each against throw-away servers the harness starts itself.  Works as root on a
# fresh Debian 12 machine (installs what it needs, runs the servers as the
# postgres user).  Ends with a line "N passed, N failed"; exits non-zero on
# any failure.
#
#   bash scripts/test.sh                 everything
#   TESTS="regress" bash scripts/test.sh one layer (regress, isolation, tap)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LAYERS=${TESTS:-regress isolation tap}
WORK=${CDP_TEST_DIR:-/tmp/cdp_traits-test}

ensure_deps
build_install
scratch_copy "$WORK"

passed=0
failed=0
status=0

# count_pg_regress LOG: add the "test X ... ok/FAILED" lines of a pg_regress log
count_pg_regress() {
	local p f
	p=$(grep -cE '^(test| ) +[^ ]+ +\.\.\. ok' "$1" || true)
	f=$(grep -cE '^(test| ) +[^ ]+ +\.\.\. FAILED' "$1" || true)
	passed=$((passed + p)); failed=$((failed + f))
	# a harness failure before any test ran still counts as a failure
	if [ "$p" = 0 ] && [ "$f" = 0 ]; then failed=$((failed + 1)); fi
}

run_layer() {
	local name=$1 target_args=$2 log="$WORK/$1.log"
	say "running $name tests"
	# shellcheck disable=SC2086
	if as_postgres make -C "$WORK" -s installcheck $target_args >"$log" 2>&1; then
		:
	else
		status=1
	fi
}

for layer in $LAYERS; do
	case $layer in
	regress)
		run_layer regress "ISOLATION= TAP_TESTS="
		grep -E '^(test| ) +[^ ]+ +\.\.\.' "$WORK/regress.log" || true
		count_pg_regress "$WORK/regress.log"
		if [ -s "$WORK/regression.diffs" ]; then
			say "regression.diffs:"; cat "$WORK/regression.diffs"
		fi
		;;
	isolation)
		run_layer isolation "REGRESS= TAP_TESTS="
		grep -E '^(test| ) +[^ ]+ +\.\.\.' "$WORK/isolation.log" || true
		count_pg_regress "$WORK/isolation.log"
		if [ -s "$WORK/output_iso/regression.diffs" ]; then
			say "isolation regression.diffs:"; cat "$WORK/output_iso/regression.diffs"
		fi
		;;
	tap)
		run_layer tap "REGRESS= ISOLATION= PROVE_FLAGS=-v"
		# prove -v prints one "ok N" / "not ok N" line per assertion
		p=$(grep -cE '^ok [0-9]+' "$WORK/tap.log" || true)
		f=$(grep -cE '^not ok [0-9]+' "$WORK/tap.log" || true)
		# a script that died before its plan completed counts as one failure
		d=$(grep -cE 'Dubious, test returned|Parse errors|No subtests run' "$WORK/tap.log" || true)
		passed=$((passed + p)); failed=$((failed + f + d))
		grep -E '^test/t/.*\.\. |^(All tests successful|Files=|Result:)' "$WORK/tap.log" || true
		if [ "$p" = 0 ] && [ "$f" = 0 ]; then failed=$((failed + 1)); fi
		if [ $((f + d)) -gt 0 ] || ! grep -q '^Result: PASS' "$WORK/tap.log"; then
			status=1
			say "TAP output:"; cat "$WORK/tap.log"
			for l in "$WORK"/tmp_check/log/*; do
				[ -f "$l" ] || continue
				say "TAP log $l (last 200 lines):"; tail -n 200 "$l"
			done
		fi
		;;
	*) die "unknown test layer '$layer' (regress, isolation, tap)" ;;
	esac
done

[ "$failed" -gt 0 ] && status=1
echo "$passed passed, $failed failed"
exit $status
