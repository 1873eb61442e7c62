#!/usr/bin/env bash
# The audit log (audit "file" { path, fail_closed }): a real daemon and
# mount, secrets created, written, read, renamed and removed as root, as
# another user and by a process with an awkward command name. Every line
# parses as JSON with every field; uid, gid, pid and command are the
# caller's; no name or value is ever in the file; .vault/audit-hash gives
# the hash the lines carry for a path; mv + SIGHUP starts a fresh file; on
# a full filesystem fail_closed fails writes with EIO and applies nothing,
# and fail_closed = false lets them through.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
AUDIT_DIR=$VFS_TMP/auditfs
AUDIT=$AUDIT_DIR/audit.log
mkdir -p "$AUDIT_DIR"
# A small filesystem of its own, so that it can be filled up.
mount -t tmpfs -o size=256k,mode=0700 vaultfs-audit-test "$AUDIT_DIR" ||
	{ echo "Bail out! cannot mount a tmpfs for the audit log"; exit 1; }
trap 'umount -l "$AUDIT_DIR" 2>/dev/null; vfs_cleanup' EXIT

# audit_block FAIL_CLOSED: n1's configuration with an audit block.
audit_block() {
	sed -i '/^audit "file"/,/^}/d' "$VFS_TMP/n1.hcl"
	printf 'audit "file" {\n  path = "%s"\n  fail_closed = %s\n}\n' "$AUDIT" "$1" >> "$VFS_TMP/n1.hcl"
}
vfs_config n1
audit_block true
declare -A MNT
vfs_start_mount n1
M=${MNT[n1]}
MALL=$VFS_TMP/m-n1-all
ok "the audit file is created 0600 at start" test "$(stat -c %a "$AUDIT")" = 600
ok "a second mount of n1, with allow_other (for another user)" vfs_mount n1 "$MALL" allow_other
ok ".vault/audit-hash is listed, mode 0600" \
	bash -c "ls '$M/.vault' | grep -qx audit-hash && test \"\$(stat -c %a '$M/.vault/audit-hash')\" = 600"
ok "sealed: audit-hash has no key (ENOKEY)" \
	bash -c "! echo /x > '$M/.vault/audit-hash' 2>/dev/null"
ok "init" vfs_init "$M"
ok "unseal" vfs_unseal "$M"
# From level 2 on, a new secret's first value comes in its CREATE_VALUE.
ok "the feature level is 2" vfs_wait_until 10 grep -qx 'feature_level: 2' "$M/.vault/status"

# Names and values that must never appear in the file.
DIR=auditdir-5e1f
NAME=auditname-c0ffee
NAME2=auditrenamed-77ab
UNAME=auditnobody-31d9
CNAME=auditcomm-9a0b
RNAME=auditroot-4e5f
RVAL=auditvalue5-8badf00d
VAL=auditvalue-d00d1e
VAL2=auditvalue2-b16b00b5
UVAL=auditvalue3-fee1dead
CVAL=auditvalue4-5ca1ab1e
ok "root: mkdir, create and write, read, rename" bash -c "
	mkdir '$M/$DIR' && printf $VAL > '$M/$DIR/$NAME' && printf $VAL2 > '$M/$DIR/$NAME' &&
	test \"\$(cat '$M/$DIR/$NAME')\" = $VAL2 && mv '$M/$DIR/$NAME' '$M/$DIR/$NAME2'"
ROOT_PID=$VFS_TMP/root.pid
ok "root writes one more secret from a shell" bash -c "
	bash -c 'echo \$\$ > \"$ROOT_PID\"; printf $RVAL > \"$M/$DIR/$RNAME\"'"
ok "a directory for user 65534" bash -c "mkdir '$M/u' && chown 65534:65534 '$M/u'"
NOBODY_PID=$VFS_TMP/nobody.pid
ok "user 65534 writes and reads a secret" bash -c "
	setpriv --reuid=65534 --regid=65534 --clear-groups -- bash -c '
		echo \$\$ >&3; printf $UVAL > \"$MALL/u/$UNAME\" && exec cat \"$MALL/u/$UNAME\"' \
		3>'$NOBODY_PID' >/dev/null"
# A command name with a quote, a backslash and a space (at most 15 bytes).
ODD='c"p\ x'
cp /bin/cp "$VFS_TMP/$ODD"
printf %s "$CVAL" > "$VFS_TMP/cval"
ODD_PID=$VFS_TMP/odd.pid
odd_copy() {
	# exec keeps the pid: the one written is the copying process's.
	bash -c 'echo $$ > "$1"; exec "$2" "$3" "$4"' - "$ODD_PID" "$VFS_TMP/$ODD" \
		"$VFS_TMP/cval" "$M/$DIR/$CNAME"
}
ok "a process named '$ODD' copies a secret in" odd_copy
ok "root removes the renamed secret" rm "$M/$DIR/$NAME2"

hash_of() {
	echo "$1" > "$M/.vault/audit-hash" && cat "$M/.vault/audit-hash"
}
H_NAME2=$(hash_of "/$DIR/$NAME2")
H_NAME=$(hash_of "/$DIR/$NAME")
H_UNAME=$(hash_of "/u/$UNAME")
H_CNAME=$(hash_of "/$DIR/$CNAME")
H_RNAME=$(hash_of "/$DIR/$RNAME")
echo "# /$DIR/$NAME2: $H_NAME2"
ok "audit-hash answers hmac-sha256:<64 hex>" \
	bash -c "[[ '$H_NAME2' =~ ^hmac-sha256:[0-9a-f]{64}$ ]] && [ '$H_NAME2' != '$H_NAME' ]"
ok "audit-hash refuses what is not a path in the mount (EINVAL)" \
	bash -c "! echo 'db/password' > '$M/.vault/audit-hash' 2>/dev/null &&
	! echo '/db//password' > '$M/.vault/audit-hash' 2>/dev/null"
ok "only root may use audit-hash" \
	bash -c "! setpriv --reuid=65534 --regid=65534 --clear-groups -- cat '$MALL/.vault/audit-hash' 2>/dev/null"

# check.py FILE ARGS...: every line parses and has every field; then each
# check named in ARGS (see below).
cat > "$VFS_TMP/check.py" <<'PYEOF'
import json, sys
path, checks = sys.argv[1], sys.argv[2:]
fields = {"time", "type", "node", "request_id", "uid", "gid", "pid", "comm", "op", "path",
          "new_path", "control", "size", "result", "error"}
lines = []
for i, raw in enumerate(open(path, "rb").read().split(b"\n")[:-1]):
    rec = json.loads(raw)
    missing = fields - rec.keys()
    if missing:
        sys.exit("line %d lacks %s: %r" % (i + 1, missing, raw))
    if not rec["time"].endswith("Z") or len(rec["time"]) != 30:
        sys.exit("line %d: time %r is not RFC 3339 UTC with ns" % (i + 1, rec["time"]))
    if rec["node"] != "n1" or rec["type"] not in ("request", "response"):
        sys.exit("line %d: node/type %r" % (i + 1, raw))
    lines.append(rec)
ids = [r["request_id"] for r in lines if r["type"] == "request"]
if len(ids) != len(set(ids)):
    sys.exit("request ids repeat")
answered = {r["request_id"]: r for r in lines if r["type"] == "response"}
for r in lines:
    if r["type"] == "request" and r["result"] is not None:
        sys.exit("a request line with a result")
def ops_of(h):
    return {r["op"] for r in lines if h in (r["path"], r["new_path"])}
for c in checks:
    kind, *a = c.split("=", 1)[0], *c.split("=", 1)[1:]
    arg = a[0] if a else ""
    if kind == "ops":  # ops=HASH:OP,OP: each OP has a line with that path
        h, want = arg.split(":", 2)[0] + ":" + arg.split(":", 2)[1], arg.split(":", 2)[2]
        got = ops_of(h)
        if not set(want.split(",")) <= got:
            sys.exit("path %s: ops %s, wanted %s" % (h, sorted(got), want))
    elif kind == "caller":  # caller=HASH:UID:GID:PID:COMM: the caller of what wrote it
        h, uid, gid, pid, comm = arg.rsplit(":", 4)[0], *arg.rsplit(":", 4)[1:]
        w = [r for r in lines if r["path"] == h and r["op"] in ("WRITE", "CREATE_VALUE")]
        if not w:
            sys.exit("no WRITE or CREATE_VALUE line for %s" % h)
        for r in w:
            if (r["uid"], r["gid"], r["pid"], r["comm"]) != (int(uid), int(gid), int(pid), comm):
                sys.exit("WRITE of %s by %r, wanted %s" % (h, (r["uid"], r["gid"], r["pid"], r["comm"]), (uid, gid, pid, comm)))
            if r["type"] == "request" and not isinstance(r["size"], int):
                sys.exit("WRITE without a size")
    elif kind == "answered":  # every request line has its answer
        for i in ids:
            if i not in answered:
                sys.exit("request %d has no answer line" % i)
    elif kind == "enoent":  # a failed request shows its errno
        if not any(r["error"] == "ENOENT" and r["result"] == 2 for r in lines):
            sys.exit("no ENOENT answer")
    elif kind == "count":
        print(len(lines))
    else:
        sys.exit("unknown check " + c)
PYEOF
check() { "$PY" "$VFS_TMP/check.py" "$AUDIT" "$@"; }
ok "a lookup of a missing name" bash -c "! cat '$M/$DIR/no-such-name' 2>/dev/null"
ok "every line parses, has every field, and every request is answered" check answered enoent
ok "no name or value in the file" bash -c "
	for s in $DIR $NAME $NAME2 $UNAME $CNAME $RNAME $VAL $VAL2 $UVAL $CVAL $RVAL ${VFS_KEYS[*]}; do
		if grep -qF \"\$s\" '$AUDIT'; then echo \"# found \$s\"; exit 1; fi
	done"
ok "the lines of /$DIR/$NAME carry its audit-hash (create with value, write, read, rename)" \
	check "ops=$H_NAME:CREATE_VALUE,WRITE,READ,RENAME"
ok "the rename's new path and the unlink carry the new name's hash" \
	check "ops=$H_NAME2:RENAME,UNLINK"
ok "root's write: uid 0, gid 0, the shell's pid and command" \
	check "caller=$H_RNAME:0:0:$(cat "$ROOT_PID"):bash"
ok "user 65534's write: uid/gid 65534, its pid, command bash" \
	check "caller=$H_UNAME:65534:65534:$(cat "$NOBODY_PID"):bash"
ok "the odd command's write: its pid and its name, escaped and intact" \
	check "caller=$H_CNAME:0:0:$(cat "$ODD_PID"):$ODD"
ok "control-file operations are logged with their name" \
	bash -c "grep -q '\"control\":\"unseal\"' '$AUDIT' && grep -q '\"op\":\"CTL_WRITE\"' '$AUDIT'"
ok "a backup's stream is logged: its CTL_OPEN names snapshot, then its pieces" bash -c "
	cat '$M/.vault/snapshot' > /dev/null &&
	grep -q '\"op\":\"CTL_OPEN\".*\"control\":\"snapshot\"' '$AUDIT' &&
	grep -q '\"op\":\"CTL_PREAD\"' '$AUDIT' && grep -q '\"op\":\"CTL_CLOSE\"' '$AUDIT'"

# Rotation: logrotate moves the file and sends SIGHUP.
rotated() {
	local before after
	mv "$AUDIT" "$AUDIT.1" || return 1
	before=$(wc -l < "$AUDIT.1")
	kill -HUP "${VFS_PID[n1]}" || return 1
	vfs_wait_until 10 test -e "$AUDIT" || { echo "# no new file after SIGHUP"; return 1; }
	cat "$M/.vault/status" > /dev/null || return 1
	after=$(wc -l < "$AUDIT.1")
	echo "# old file: $before lines, then $after; new file: $(wc -l < "$AUDIT") lines"
	[ "$before" -eq "$after" ] && [ "$(wc -l < "$AUDIT")" -ge 2 ] &&
		[ "$(stat -c %a "$AUDIT")" = 600 ] && check answered
}
ok "mv + SIGHUP: later lines go to a fresh file, none to the old one" rotated
ok "the daemon logs the reopen" vfs_log_says n1 "audit: reopened" "$AUDIT"
rm -f "$AUDIT.1"

# A full filesystem. fail_closed: a request whose line cannot be written
# fails with EIO, before anything of it is done.
FULL_NAME=auditfull-0b5e55ed
OLD=auditold-abad1dea
NEW=auditnew-deadbeef
ok "a secret to overwrite" bash -c "printf $OLD > '$M/$DIR/$FULL_NAME'"
fill() {
	dd if=/dev/zero of="$AUDIT_DIR/fill" bs=4k 2>/dev/null
	# The log file's last page may still have room: use it up with
	# requests until one is refused.
	local i
	for i in $(seq 200); do
		cat "$M/.vault/status" > /dev/null 2>"$VFS_TMP/full.err" || break
	done
	grep -q "Input/output error" "$VFS_TMP/full.err"
}
ok "the audit file's filesystem fills up; a status read fails with EIO" fill
ok "fail_closed: a write fails with EIO" \
	fails_with "Input/output error" bash -c "printf $NEW > '$M/$DIR/$FULL_NAME'"
ok "fail_closed: a create fails with EIO" \
	fails_with "Input/output error" bash -c "printf $NEW > '$M/$DIR/new-while-full'"
ok "fail_closed: an unlink fails with EIO" \
	fails_with "Input/output error" rm "$M/$DIR/$FULL_NAME"
ok "the daemon warns that it cannot write the audit log" \
	vfs_log_says n1 "audit: cannot write" "No space left on device" "EIO"
ok "room again: nothing was applied (old value, no new file), nothing lost" bash -c "
	rm '$AUDIT_DIR/fill' && test \"\$(cat '$M/$DIR/$FULL_NAME')\" = $OLD &&
	! test -e '$M/$DIR/new-while-full'"
# (An answer whose line found the disk full has none: its request's line
# is the record.)
ok "every line in the file still parses (no torn line)" check

# fail_closed = false: the requests go on, unaudited, and the daemon says so.
restart_open() {
	vfs_stop n1
	audit_block false
	vfs_start n1 && vfs_wait_until 20 grep -q '^sealed: true' "$M/.vault/status" && vfs_unseal "$M"
}
ok "n1 restarted with fail_closed = false, unsealed" restart_open
ok "full again" bash -c "dd if=/dev/zero of='$AUDIT_DIR/fill' bs=4k 2>/dev/null; \
	for i in \$(seq 200); do printf x > '$M/$DIR/pad' || exit 1; done"
ok "fail_closed = false: a write succeeds on a full audit filesystem" \
	bash -c "printf $NEW > '$M/$DIR/$FULL_NAME' && test \"\$(cat '$M/$DIR/$FULL_NAME')\" = $NEW"
ok "the daemon warns that requests go on unaudited" \
	vfs_log_says n1 "audit: cannot write" "unaudited"
rm -f "$AUDIT_DIR/fill"
ok "no value in the file after all of it" bash -c "! grep -qF -e $OLD -e $NEW -e $FULL_NAME '$AUDIT'"

vfs_done
