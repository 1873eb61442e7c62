#!/usr/bin/env bash
# The manual pages render without a groff warning, their NAME sections
# parse (lexgrog: what man-db indexes), and every option vaultfsd's usage
# lists is in vaultfsd(8).
#   check_manpages.sh VAULTFSD
set -u
cd "$(dirname "$0")/.."
VAULTFSD=$1
pages=(man/vaultfsd.8 man/mount.vaultfs.8 man/vaultfs.hcl.5)
echo "1..$((${#pages[@]} + 1))"
n=0 rc=0
for p in "${pages[@]}"; do
	n=$((n + 1))
	warn=$(LC_ALL=C.UTF-8 groff -ww -man -Tutf8 -z "$p" 2>&1)
	if [ -z "$warn" ] && lexgrog "$p" >/dev/null 2>&1; then
		echo "ok $n - $p renders without warnings and has a NAME section"
	else
		echo "$warn" | sed 's/^/# /'
		echo "not ok $n - $p"
		rc=1
	fi
done
n=$((n + 1))
missing=$("$VAULTFSD" -h | grep -Eo '^ +-[a-z]+' | tr -d ' ' | while read -r opt; do
	grep -q "^\\.B.* \\\\$opt\$\\|^\\.BR* \\\\$opt\\b\\|\\\\$opt" man/vaultfsd.8 || echo "$opt"
done)
if [ -z "$missing" ]; then
	echo "ok $n - every option of vaultfsd -h is in vaultfsd(8)"
else
	echo "# not in vaultfsd(8): $missing"
	echo "not ok $n - every option of vaultfsd -h is in vaultfsd(8)"
	rc=1
fi
exit $rc
