#!/usr/bin/env bash
# A fault campaign: N runs of tests/faults/run.sh one after the other, each
# with a fresh random seed, so that more of the schedule space is sampled
# than one seed ever does. Stops at the first failing run and keeps its
# files (histories, daemons' logs, the fault schedule, lincheck's report).
#
#   tests/faults/campaign.sh N [run.sh options...]
#   tests/faults/run.sh --campaign N [run.sh options...]
#     --seed S     the first run's seed (the others are random)
#     --keep DIR   where the runs' outputs go (default /tmp/vaultfs-campaign-*):
#                  run-I-SEED.tap for every run, and run-I-SEED/ with all the
#                  files of a failing run
# Any other option (--duration, --nemesis, ...) is passed to every run.
# Output is TAP, one line per run with its seed, faults and operations; the
# exit status is 0 only if every run passed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
N=${1:-}
case $N in
'' | *[!0-9]* | 0) echo "usage: $0 N [run.sh options...]" >&2; exit 2 ;;
esac
shift
SEED=
OUT=
ARGS=()
while [ $# -gt 0 ]; do
	case $1 in
	--seed) SEED=$2; shift ;;
	--keep) OUT=$2; shift ;;
	--campaign) echo "$0: --campaign inside a campaign" >&2; exit 2 ;;
	*) ARGS+=("$1") ;;
	esac
	shift
done
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/vaultfs-campaign-XXXXXX)
mkdir -p "$OUT" || exit 1
echo "# campaign of $N runs (${ARGS[*]:-default options}); outputs in $OUT"
echo "1..$N"

# fresh_seed: 30 random bits from the kernel, never the same sequence twice.
fresh_seed() { od -An -N4 -tu4 /dev/urandom | awk '{ print $1 % 1073741824 }'; }

failed=0
for i in $(seq 1 "$N"); do
	seed=${SEED:-$(fresh_seed)}
	SEED=
	tap=$OUT/run-$i-$seed.tap
	start=$(date -u +%FT%TZ)
	bash "$HERE/run.sh" --seed "$seed" "${ARGS[@]}" --keep "$OUT/run-$i-$seed" > "$tap" 2>&1
	rc=$?
	checks=$(grep -c '^ok ' "$tap")
	notok=$(grep -c '^not ok ' "$tap")
	faults=$(sed -n 's/^# \[[^]]*\] nemesis done: //p' "$tap")
	ops=$(sed -n 's/^# lincheck: \(.*\)$/\1/p' "$tap")
	summary="run $i, seed $seed, started $start: $checks of $((checks + notok)) checks; faults: ${faults:-?}; ${ops:-no lincheck result}"
	if [ "$rc" -eq 0 ] && [ "$notok" -eq 0 ]; then
		echo "ok $i - $summary"
		rm -rf "$OUT/run-$i-$seed" # a passing run keeps its TAP only
	else
		echo "not ok $i - $summary"
		grep '^not ok ' "$tap" | sed 's/^/#   /'
		echo "# the failing run's files: $OUT/run-$i-$seed (its output: $tap)"
		echo "# reproduce: tests/faults/run.sh --seed $seed ${ARGS[*]}"
		failed=1
		break
	fi
done
exit "$failed"
