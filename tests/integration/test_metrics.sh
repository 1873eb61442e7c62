#!/usr/bin/env bash
# .vault/metrics as Prometheus reads it: three nodes, the text parsed by a
# real parser (Debian's python3-prometheus-client), each node reporting its
# own figures (a follower its own term, indexes, requests and forwarded
# writes, never the leader's), the leader each peer's match index, the
# histograms fed, a sealed node its seal state, and no secret name or
# value anywhere in it. n1 also writes the text to a file for
# node_exporter (telemetry { prometheus_textfile }).
. "$(dirname "$0")/lib.sh"

export VFS_SNAPSHOT_THRESHOLD=16 VFS_TRAILING_LOGS=8
PY=/usr/bin/python3 # Debian's python3, which has prometheus_client
# metric MOUNT NAME [LABELS]: the value of NAME (the sample whose labels
# include LABELS, given as k=v,k=v), parsed by prometheus_client; "absent"
# if there is none.
metric() {
	"$PY" - "$1/.vault/metrics" "$2" "${3:-}" <<'PYEOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
path, name, want = sys.argv[1], sys.argv[2], sys.argv[3]
labels = dict(kv.split('=', 1) for kv in want.split(',') if kv)
text = open(path).read()
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            print(int(s.value) if s.value == int(s.value) else s.value)
            sys.exit(0)
print("absent")
PYEOF
}
parses() {
	"$PY" - "$1/.vault/metrics" <<'PYEOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = list(text_string_to_metric_families(open(sys.argv[1]).read()))
names = {f.name for f in fams}
need = {"vaultfs_sealed", "vaultfs_raft_term", "vaultfs_raft_commit_index",
        "vaultfs_raft_applied_index", "vaultfs_raft_is_leader", "vaultfs_raft_voters",
        "vaultfs_raft_leader_changes", "vaultfs_requests", "vaultfs_request_seconds",
        "vaultfs_forwarded_requests", "vaultfs_raft_log_write_seconds",
        "vaultfs_fsm_apply_seconds", "vaultfs_snapshot_seconds", "vaultfs_raft_log_entries",
        "vaultfs_raft_log_bytes", "vaultfs_clients_connected", "vaultfs_unseal_progress",
        "vaultfs_key_term"}
missing = need - names
print("# %d families%s" % (len(fams), "; missing: " + " ".join(sorted(missing)) if missing else ""))
sys.exit(1 if missing else 0)
PYEOF
}

PROM=$VFS_TMP/textfile/vaultfs.prom
mkdir -p "$VFS_TMP/textfile"
vfs_config n1
printf 'telemetry {\n  prometheus_textfile = "%s"\n  interval = "1s"\n}\n' "$PROM" >> "$VFS_TMP/n1.hcl"
declare -A MNT
vfs_start_mount n1 n2 n3
M1=${MNT[n1]} M2=${MNT[n2]} M3=${MNT[n3]}
ok ".vault/metrics is listed, mode 0444" \
	bash -c "ls '$M1/.vault' | grep -qx metrics && test \"\$(stat -c %a '$M1/.vault/metrics')\" = 444"
ok "an uninitialised, sealed node: the text parses, sealed 1, initialized 0" \
	bash -c "$(declare -f metric); PY=$PY; [ \"\$(metric '$M1' vaultfs_sealed)\" = 1 ] && [ \"\$(metric '$M1' vaultfs_initialized)\" = 0 ]"
ok "init" vfs_init "$M1"
ok "one share given: unseal progress 1 of threshold 3" bash -c "echo ${VFS_KEYS[0]} > '$M1/.vault/unseal' &&
	$(declare -f metric); PY=$PY; [ \"\$(metric '$M1' vaultfs_unseal_progress)\" = 1 ] &&
	[ \"\$(metric '$M1' vaultfs_unseal_threshold)\" = 3 ]"
ok "unseal n1 (progress reset first)" bash -c "echo reset > '$M1/.vault/unseal'" && vfs_unseal "$M1"
join() { echo "$(vfs_cluster_addr n1)" > "${MNT[$1]}/.vault/join" && vfs_unseal "${MNT[$1]}"; }
ok "n2 joins" join n2
ok "n3 joins" join n3
ok "three voters" vfs_wait_until 20 vfs_three_voters "$M1"
ok "every node's text parses with every family in it" bash -c "$(declare -f parses); PY=$PY; parses '$M1' && parses '$M2' && parses '$M3'"

L=$(vfs_status_field "$M1" leader)
ML=${MNT[$L]}
F=n2
[ "$L" = n2 ] && F=n3
MF=${MNT[$F]}
echo "# leader $L, follower $F"
ok "is_leader: 1 on the leader, 0 on the follower" \
	bash -c "$(declare -f metric); PY=$PY; [ \"\$(metric '$ML' vaultfs_raft_is_leader)\" = 1 ] && [ \"\$(metric '$MF' vaultfs_raft_is_leader)\" = 0 ]"
ok "both count three voters" \
	bash -c "$(declare -f metric); PY=$PY; [ \"\$(metric '$ML' vaultfs_raft_voters)\" = 3 ] && [ \"\$(metric '$MF' vaultfs_raft_voters)\" = 3 ]"
ok "the leader shows the match index of its two peers, the follower none" \
	bash -c "$(declare -f metric); PY=$PY; [ \"\$(metric '$ML' vaultfs_raft_peer_match_index peer=$F)\" -gt 0 ] &&
	[ \"\$(metric '$MF' vaultfs_raft_peer_match_index)\" = absent ]"
ok "the follower heard from its leader within an election timeout" \
	bash -c "$(declare -f metric); PY=$PY; v=\$(metric '$MF' vaultfs_raft_leader_last_contact_ms); echo \"# \$v ms\"; [ \"\$v\" -lt 1000 ]"

SECRET_NAME=metrics-probe-name-7f3a SECRET_VALUE=metrics-probe-value-91c2
reads_counted() {
	local before_f before_l after_f after_l i
	before_f=$(metric "$MF" vaultfs_requests_total op=READ,result=ok)
	before_l=$(metric "$ML" vaultfs_requests_total op=READ,result=ok)
	[ "$before_f" = absent ] && before_f=0
	[ "$before_l" = absent ] && before_l=0
	for i in 1 2 3 4 5; do cat "$MF/d/$SECRET_NAME" >/dev/null || return 1; done
	after_f=$(metric "$MF" vaultfs_requests_total op=READ,result=ok)
	after_l=$(metric "$ML" vaultfs_requests_total op=READ,result=ok)
	[ "$after_l" = absent ] && after_l=0
	echo "# follower READ ok $before_f -> $after_f, leader $before_l -> $after_l"
	# The mount may keep a value (a grant), so not every cat reaches the
	# daemon; at least one does, and none of them is the leader's.
	[ "$after_f" -gt "$before_f" ] && [ "$after_l" -eq "$before_l" ]
}
ok "a secret written through the follower" \
	bash -c "mkdir -p '$MF/d' && printf $SECRET_VALUE > '$MF/d/$SECRET_NAME'"
ok "the follower counts its own reads; the leader does not count them" reads_counted
ok "writes through the follower are counted as forwarded there, not on the leader" \
	bash -c "$(declare -f metric); PY=$PY; [ \"\$(metric '$MF' vaultfs_forwarded_requests_total)\" -gt 0 ] &&
	[ \"\$(metric '$ML' vaultfs_forwarded_requests_total)\" = 0 ]"
ok "a failed request is counted with its errno's name" \
	bash -c "! cat '$MF/d/no-such' 2>/dev/null; $(declare -f metric); PY=$PY;
	[ \"\$(metric '$MF' vaultfs_requests_total op=LOOKUP_WRITABLE,result=ENOENT)\" -gt 0 ]"
ok "forty more writes (the log passes the snapshot threshold)" \
	bash -c "for i in \$(seq 40); do printf v\$i > '$ML/d/k'\$i || exit 1; done"
fed() {
	local m
	for m in "$ML" "$MF"; do
		[ "$(metric "$m" vaultfs_raft_log_write_seconds_count)" -gt 0 ] &&
			[ "$(metric "$m" vaultfs_fsm_apply_seconds_count)" -gt 40 ] || return 1
	done
	[ "$(metric "$ML" vaultfs_snapshot_seconds_count)" -gt 0 ]
}
ok "histograms are fed: log writes and applies on both, a snapshot taken" vfs_wait_until 10 fed
# A larger store is snapshotted less often: the log may grow by about a
# quarter of the latest snapshot (an entry counted as 256 bytes) before
# the next one, rather than snapshot_threshold (16 here) entries each time.
ok "200 secrets of 4 KiB (a snapshot of about 800 KiB)" \
	bash -c "v=\$(head -c 4096 /dev/zero | tr '\\0' x); for i in \$(seq 200); do printf %s \"\$v\" > '$ML/d/big'\$i || exit 1; done"
SNAPS=$(metric "$ML" vaultfs_snapshot_seconds_count)
ok "200 small writes then take at most 2 snapshots (12 at 16 entries each)" \
	bash -c "for i in \$(seq 200); do printf s\$i > '$ML/d/k'\$i || exit 1; done; $(declare -f metric); PY=$PY;
	n=\$(metric '$ML' vaultfs_snapshot_seconds_count); echo \"# \$((n - $SNAPS)) snapshots\"; [ \$((n - $SNAPS)) -le 2 ]"
ok "the follower's applied index is its own and close to the leader's" \
	bash -c "$(declare -f metric); PY=$PY; f=\$(metric '$MF' vaultfs_raft_applied_index) l=\$(metric '$ML' vaultfs_raft_applied_index);
	echo \"# leader \$l, follower \$f\"; [ \"\$f\" -gt 40 ] && [ \"\$f\" -le \"\$l\" ]"
ok "clients connected: at least the mount" \
	bash -c "$(declare -f metric); PY=$PY; [ \"\$(metric '$MF' vaultfs_clients_connected)\" -ge 1 ]"
ok "no secret name or value in any node's metrics" \
	bash -c "! grep -qe $SECRET_NAME -e $SECRET_VALUE '$M1/.vault/metrics' '$M2/.vault/metrics' '$M3/.vault/metrics'"
ok "leader changes: the follower has seen one leader" \
	bash -c "$(declare -f metric); PY=$PY; [ \"\$(metric '$MF' vaultfs_raft_leader_changes_total)\" -ge 1 ]"
CHANGES=$(metric "$MF" vaultfs_raft_leader_changes_total)
ok "step-down on the leader" bash -c "echo 1 > '$ML/.vault/step-down'"
more_changes() { [ "$(metric "$MF" vaultfs_raft_leader_changes_total)" -gt "$CHANGES" ]; }
ok "the follower counts one more leader change" vfs_wait_until 10 more_changes

# The textfile.
textfile_ok() {
	"$PY" - "$PROM" <<'PYEOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
names = {f.name for f in text_string_to_metric_families(open(sys.argv[1]).read())}
sys.exit(0 if "vaultfs_raft_applied_index" in names and "vaultfs_requests" in names else 1)
PYEOF
}
ok "n1 writes its metrics to the telemetry textfile, which parses" vfs_wait_until 5 textfile_ok
ok "the textfile is 0644 and no temporary file is left beside it" \
	bash -c "test \"\$(stat -c %a '$PROM')\" = 644 && test \"\$(ls '$VFS_TMP/textfile')\" = vaultfs.prom"
applied_of_file() {
	"$PY" - "$PROM" <<'PYEOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in f.samples:
        if s.name == "vaultfs_raft_applied_index":
            print(int(s.value))
PYEOF
}
BEFORE=$(applied_of_file)
ok "a write through n1" bash -c "printf more > '$M1/d/more'"
moved_on() { [ "$(applied_of_file)" -gt "$BEFORE" ]; }
ok "the textfile follows within its interval (1 s)" vfs_wait_until 5 moved_on

vfs_done
