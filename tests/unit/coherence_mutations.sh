#!/usr/bin/env bash
# Breaks each cache-coherence rule in a copy of src/coherence/coherence.c
# and checks that tests/unit/test_coherence.c catches it: the program built
# from the broken copy must fail, the one from the unbroken copy must pass.
# A mutation whose text is no longer in coherence.c fails this script too,
# so the list follows the code.
#   coherence_mutations.sh [SOURCE_ROOT]   (CC: the C compiler, default cc)
set -euo pipefail
ROOT=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
CC=${CC:-cc}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# name ~ text in coherence.c ~ what it becomes (\n, \t: newline, tab)
MUTATIONS=(
	"write rule ignores nodes with grants~peer_may_hold(c, p, now) && p->visible < m~false"
	"follower shows state before it is safe~return index <= c->known_safe;~return true;"
	"leader shows state before it is safe~return index <= coherence_safe_index(c);~return true;"
	"new leader trusts old grants gone~if (now < c->leader_since + c->cache_ms + GRANT_SLACK_MS)~if (false)"
	"rule (b) a grant length too early~now_ms(c) >= v->applied_ms + c->cache_ms + 1~now_ms(c) >= v->applied_ms + 1"
	"safe index by time too early~if (sample_at(c, i)->ms + c->cache_ms + 1 <= now)~if (sample_at(c, i)->ms + 1 <= now)"
	"lease without margin~#define LEASE_MARGIN_MS 5u~#define LEASE_MARGIN_MS 0u"
	"lease longer than grants~uint64_t len = (c->cache_ms - LEASE_MARGIN_MS) * 1000000u;~uint64_t len = (c->cache_ms + LEASE_MARGIN_MS) * 1000000u;"
	"lease where no grant may be given~if (c->lease_round_ns == 0 || !c->env.may_grant(c->env.ctx))~if (c->lease_round_ns == 0)"
	"grants not remembered~c->granted_until = until / 1000000u + 1;~(void)until;"
	"dead node's grants never end~return p->round_ms + c->cache_ms + GRANT_SLACK_MS > now;~return true;"
	"visible index ignores unacknowledged notices~v = c->visible_base;~v = applied(c);"
	"no freeze when a watcher goes away~\tif (c->granted_until > now_ms(c))\n\t\tfreeze(c);\n}~}"
	"no freeze at session start~\t\tfreeze(c);\n\tc->reported_term = 0;~\tc->reported_term = 0;"
	"report of another term counts~struct peer *p = term == c->leader_term ? peer_get(c, peer, false) : NULL;~struct peer *p = peer_get(c, peer, false);"
	"lost report not repeated~\tif (status != 0)\n\t\tc->reported_term = 0; /* tell the next leader (or this one) again */\n~"
)

build() { # SRC OUT
	"$CC" -std=c11 -D_GNU_SOURCE -w -I"$ROOT/src" -I"$ROOT/include" "$1" \
		"$ROOT/tests/unit/test_coherence.c" -lcmocka -o "$2"
}

build "$ROOT/src/coherence/coherence.c" "$TMP/intact"
if ! timeout 60 "$TMP/intact" >"$TMP/intact.log" 2>&1; then
	cat "$TMP/intact.log"
	echo "coherence_mutations: test_coherence fails on the intact code" >&2
	exit 1
fi

failed=0
for m in "${MUTATIONS[@]}"; do
	IFS='~' read -r name from to <<<"$m"
	if ! python3 - "$ROOT/src/coherence/coherence.c" "$TMP/mutant.c" "$from" "$to" <<'EOF'
import sys
src, out, a, b = sys.argv[1:5]
a = a.replace('\\n', '\n').replace('\\t', '\t')
b = b.replace('\\n', '\n').replace('\\t', '\t')
s = open(src).read()
if s.count(a) != 1:
    sys.exit(1)
open(out, 'w').write(s.replace(a, b))
EOF
	then
		echo "not ok - $name: its text is not in coherence.c exactly once"
		failed=1
		continue
	fi
	if ! build "$TMP/mutant.c" "$TMP/mutant"; then
		echo "not ok - $name: the mutant does not compile"
		failed=1
	elif timeout 60 "$TMP/mutant" >"$TMP/mutant.log" 2>&1; then
		echo "not ok - $name: test_coherence passes with the rule broken"
		failed=1
	else
		caught=$(grep -Eo '^\[  (FAILED  |ERROR   )\] test_[a-z_]*' "$TMP/mutant.log" | sed 's/.*] //' |
			sort -u | tr '\n' ' ' || true)
		echo "ok - $name: caught by ${caught:-a failing run}"
	fi
done
exit $failed
