#!/usr/bin/env bash
# TAP test of lincheck, the fault harness's linearizability checker.
#
# 1. Every hand-made history in $HISTORIES: good-*.hist must be judged
#    linearizable (exit 0), bad-*.hist NOT linearizable (exit 1),
#    malformed-*.hist rejected (exit 3). Each `# expect: TEXT` line of a file
#    must appear in lincheck's output (the explanation, or FILE:LINE: error).
# 2. Input handling: stdin, `-`, a history split across files, --quiet, a NUL
#    byte, a missing file, a bad option, empty input.
# 3. lincheck --self-test with two seeds (generated linearizable histories
#    and certainly-illegal mutations of them).
# 4. A generated history of 3000 ok ops on one key with 30 unknown writes
#    (half of them observed much later): linearizable, and its stale-read
#    mutation not; the time each takes is printed. --max-states 10 on it
#    must give exit 2 (undecided).
#
# Environment (set by meson): LINCHECK (the binary), HISTORIES (directory).
set -u
: "${LINCHECK:?LINCHECK must point to the lincheck binary}"
: "${HISTORIES:?HISTORIES must point to the directory of *.hist files}"

TMP=$(mktemp -d /tmp/lincheck-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
TESTS=0
FAILED=0

# tap STATUS DESCRIPTION: one TAP line; STATUS 0 is success.
tap() {
	TESTS=$((TESTS + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $TESTS - $2"
	else
		echo "not ok $TESTS - $2"
		FAILED=1
	fi
}

# comment FILE: FILE's lines as TAP comments.
comment() {
	sed 's/^/#   /' "$1"
}

# run WANT_RC OUT ARGS...: runs lincheck with stdout and stderr in OUT;
# returns 0 when it exited with WANT_RC, and sets RC.
run() {
	local want=$1 out=$2
	shift 2
	"$LINCHECK" "$@" >"$out" 2>&1
	RC=$?
	[ "$RC" -eq "$want" ]
}

# has OUT TEXT: whether OUT contains TEXT (fixed string).
has() {
	grep -qF -- "$2" "$1"
}

ms_since() {
	echo $((($(date +%s%N) - $1) / 1000000))
}

# ---- 1. hand-made histories ----

for f in "$HISTORIES"/*.hist; do
	name=$(basename "$f")
	case "$name" in
	good-*) want=0 ;;
	bad-*) want=1 ;;
	malformed-*) want=3 ;;
	*) continue ;;
	esac
	out="$TMP/$name.out"
	status=0
	run "$want" "$out" "$f" || status=1
	expects=$(sed -n 's/^# expect: //p' "$f")
	while IFS= read -r text; do
		[ -n "$text" ] && ! has "$out" "$text" && status=1
	done <<<"$expects"
	tap "$status" "$name: exit $RC (want $want)${expects:+; output has: ${expects//$'\n'/, }}"
	# The explanations are worth reading in the log even when right.
	if [ "$status" -ne 0 ] || [ "$want" -eq 1 ]; then
		comment "$out"
	fi
done

# ---- 2. input handling ----

good="$HISTORIES/good-sequential.hist"
status=0
"$LINCHECK" <"$good" >"$TMP/stdin.out" 2>&1 || status=1
has "$TMP/stdin.out" "lincheck: 2 keys, 9 ops: all linearizable" || status=1
tap "$status" "reads stdin when no file is given; summary line"

# One file per client, as the harness writes them; `-` reads stdin.
split_by_process() { # split_by_process FILE PREFIX
	awk -v prefix="$2" '!/^#/ && NF { print > (prefix $1) }' "$1"
}
split_by_process "$HISTORIES/good-unknown-write-later.hist" "$TMP/later-p"
run 0 "$TMP/split-good.out" "$TMP/later-p1" - "$TMP/later-p3" <"$TMP/later-p2"
tap $? "a linearizable history split across files (and stdin as -) is linearizable"
split_by_process "$HISTORIES/bad-stale-read.hist" "$TMP/stale-p"
run 1 "$TMP/split-bad.out" "$TMP/stale-p2" "$TMP/stale-p1"
tap $? "a stale read split across files, in any order, is NOT linearizable"

run 0 "$TMP/quiet.out" --quiet "$good"
status=$?
[ "$(wc -l <"$TMP/quiet.out")" -eq 1 ] || status=1
tap "$status" "--quiet prints only the summary for a linearizable history"
run 1 "$TMP/quiet-bad.out" --quiet "$HISTORIES/bad-lost-write.hist" "$good"
status=$?
has "$TMP/quiet-bad.out" "lost write" || status=1
has "$TMP/quiet-bad.out" "key x:" && status=1
tap "$status" "--quiet still explains the key that is NOT linearizable, and only it"

printf '1 w k v1 0 10 ok\n1 r k v1\0x 20 30 ok\n' >"$TMP/nul.hist"
run 3 "$TMP/nul.out" "$TMP/nul.hist"
status=$?
has "$TMP/nul.out" "nul.hist:2: line contains a NUL byte" || status=1
tap "$status" "a NUL byte is malformed input, with its line number"

run 3 "$TMP/missing.out" "$TMP/no-such-file.hist"
status=$?
has "$TMP/missing.out" "no-such-file.hist: No such file or directory" || status=1
tap "$status" "a missing file exits 3 and says so"

run 4 "$TMP/usage.out" --max-sates 5 "$good"
tap $? "an unknown option exits 4"

run 0 "$TMP/empty.out" /dev/null
status=$?
has "$TMP/empty.out" "lincheck: 0 keys, 0 ops: all linearizable" || status=1
tap "$status" "an empty history is trivially linearizable"

# The context of an anomaly: the mount of each process (faultclient's
# `# process P mount M` lines) and, with --faults, the wall-clock time and
# the faults within 5 s (on the histories' clock), nothing further away.
printf '# process 1 mount m-n1\n1 w k v-1-1 1000000000 1010000000 ok\n1 w k v-1-2 1020000000 1030000000 ok\n' > "$TMP/ctx-1.hist"
printf '# process 2 mount m-n3\n2 r k v-1-1 1040000000 1050000000 ok\n' > "$TMP/ctx-2.hist"
{
	echo "1000000000 1796560000000000000 isolate: n3's link down"
	echo "4000000000 1796560003000000000 isolate: n3's link up"
	echo "9000000000 1796560008000000000 stepdown: far away"
} > "$TMP/faults.log"
run 1 "$TMP/ctx.out" --faults "$TMP/faults.log" "$TMP/ctx-1.hist" "$TMP/ctx-2.hist"
status=$?
for text in "p2 read v-1-1 [40.0 .. 50.0 ms] on m-n3" "p1 write v-1-2 [20.0 .. 30.0 ms] on m-n1" \
	"at 2026-12-06T12:26:40.040Z" "-0.040 s  isolate: n3's link down" "+2.960 s  isolate: n3's link up"; do
	has "$TMP/ctx.out" "$text" || { status=1; echo "# missing: $text"; }
done
has "$TMP/ctx.out" "far away" && status=1
tap "$status" "an anomaly names each process's mount and the faults within 5 s of it"
comment "$TMP/ctx.out"
run 3 "$TMP/ctx-bad.out" --faults "$TMP/ctx-1.hist" "$TMP/ctx-1.hist"
tap $? "a malformed faults file is refused (exit 3)"

# ---- 3. self-test ----

for seed in 1 20240607; do
	run 0 "$TMP/self-$seed.out" --self-test "$seed" 300
	tap $? "--self-test seed $seed, 300 rounds"
	comment "$TMP/self-$seed.out"
done

# ---- 4. a large generated history ----

# gen_large SEED STALE_ROUND: 600 rounds of 1 ms on key `reg`. In each, p1
# writes a new value (or, one time in ten, deletes) over 0.6 ms while p2-p5
# read inside that window, all overlapping, each seeing the old or the new
# value. Every 20 rounds p6 issues a write whose outcome is unknown; half of
# them are observed by p2 25 rounds later, the others never take effect. With
# STALE_ROUND > 0, p5's read in that round sees the value written two writes
# before: a stale read.
gen_large() {
	awk -v seed="$1" -v stale_round="$2" 'BEGIN {
		srand(seed)
		cur = "-"; last = "-"; older = "-"
		for (r = 1; r <= 600; r++) {
			t = 1000000000000 + r * 1000000
			if (cur != "-" && rand() < 0.1) {
				op = "d"; new = "-"
			} else {
				op = "w"; new = "v-1-" r
			}
			printf "1 %s reg %s %.0f %.0f ok\n", op, new, t, t + 600000
			for (p = 2; p <= 5; p++) {
				if (p == 2 && (r in observed))
					v = observed[r]
				else if (p == 5 && r == stale_round)
					v = older
				else
					v = rand() < 0.5 ? cur : new
				printf "%d r reg %s %.0f %.0f ok\n", p, v,
					t + 100000 + int(rand() * 100000),
					t + 400000 + int(rand() * 100000)
			}
			if (r % 20 == 10) {
				u = "u-6-" r
				printf "6 w reg %s %.0f 0 unknown\n", u, t + 700000
				if (int(r / 20) % 2 == 0)
					observed[r + 25] = u
			}
			if (op == "w") {
				older = last; last = new
			}
			cur = new
		}
	}'
}

gen_large 7 0 >"$TMP/large.hist"
ops=$(wc -l <"$TMP/large.hist")
unknown=$(grep -c unknown "$TMP/large.hist")
start=$(date +%s%N)
run 0 "$TMP/large.out" "$TMP/large.hist"
status=$?
took=$(ms_since "$start")
tap "$status" "generated history, $ops ops on one key ($unknown unknown writes): linearizable"
echo "# checked in $took ms"
[ "$status" -eq 0 ] || comment "$TMP/large.out"

gen_large 7 590 >"$TMP/large-stale.hist"
start=$(date +%s%N)
run 1 "$TMP/large-stale.out" "$TMP/large-stale.hist"
status=$?
took=$(ms_since "$start")
has "$TMP/large-stale.out" "stale read" || status=1
tap "$status" "the same history with one stale read near its end: NOT linearizable"
echo "# checked in $took ms"
comment "$TMP/large-stale.out"

run 2 "$TMP/bound.out" --max-states 10 "$TMP/large.hist"
status=$?
has "$TMP/bound.out" "undecided" || status=1
tap "$status" "--max-states 10 on it: undecided (exit 2), never linearizable"
[ "$status" -eq 0 ] || comment "$TMP/bound.out"

echo "1..$TESTS"
exit "$FAILED"
