#!/usr/bin/env bash
# Every tracked file that starts with "#!" is a command the README or a
# script runs: it must be executable in git, or a fresh clone answers
# "Permission denied". Outside a git checkout there is nothing to check.
set -u
cd "$(dirname "$0")/.."
echo "1..1"
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	echo "ok 1 - # SKIP not a git checkout"
	exit 0
fi
bad=$(git ls-files -s | while read -r mode _ _ path; do
	[ "$mode" = 100644 ] && head -c 2 "$path" 2>/dev/null | grep -q '^#!' && echo "$path"
done)
if [ -z "$bad" ]; then
	echo "ok 1 - every script is executable in git"
else
	echo "$bad" | sed 's/^/# mode 644: /'
	echo "not ok 1 - every script is executable in git (git update-index --chmod=+x FILE)"
	exit 1
fi
