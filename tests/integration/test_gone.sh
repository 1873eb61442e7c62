#!/usr/bin/env bash
# "No such file" is answered at once when no entry that is not safe yet
# removed or moved a name (node_safe.c), and waits like every other answer
# when one did: a removal must not show through one mount while another
# mount, on another node, still shows the name under its grant.
#
# Each round: n2's mount B looks a secret up (its kernel keeps it, up to
# 80 ms), n2 is paused (SIGSTOP: it cannot act on the removal's notice,
# so the removal is safe only once n2's grants have run out), n1's mount A
# removes or renames the secret, n1's mount C asks for it until it is gone,
# n2 goes on, and B must not show the secret any more. With the early
# answer given for removals too, B still showed it in 29 of 40 rounds.
. "$(dirname "$0")/lib.sh"

A=$VFS_TMP/m-n1 B=$VFS_TMP/m-n2 C=$VFS_TMP/c
for n in n1 n2 n3; do
	vfs_start "$n"
	vfs_mount "$n" "$VFS_TMP/m-$n" || { echo "Bail out! cannot mount $n"; exit 1; }
done
vfs_form_three
vfs_mount n1 "$C" || { echo "Bail out! cannot mount n1 twice"; exit 1; }
mkdir -p "$A/r"

# gone_first OP: 20 rounds of OP (rm or mv) through A; says in which rounds
# B still showed the secret after C had answered that it was gone. C asks
# through a descriptor of the directory, opened before: the directory's
# own name, dropped by the removal's notice, would be looked up again
# first, and that answer shows the removal (the directory's times), so it
# waits until safe whatever the answer about the name does.
gone_first() {
	python3 - "$1" "$A/r" "$B/r" "$C/r" "${VFS_PID[n2]}" <<'PY'
import os, signal, subprocess, sys, time
op, a, b, c, n2 = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
cfd = os.open(c, os.O_RDONLY | os.O_DIRECTORY)
bad = 0
for i in range(1, 21):
    name = f"{op}{i}"
    with open(os.path.join(a, name), "w") as f:
        f.write(f"v{i}\n")
    end = time.monotonic() + 10
    while not os.path.exists(os.path.join(b, name)):
        if time.monotonic() > end:
            sys.exit(1)
        time.sleep(0.01)
    time.sleep(0.2)  # the create is safe: B's next look is granted in full
    os.stat(os.path.join(b, name))
    os.stat(name, dir_fd=cfd)
    os.kill(n2, signal.SIGSTOP)
    try:
        argv = ["rm", os.path.join(a, name)] if op == "rm" else \
               ["mv", os.path.join(a, name), os.path.join(a, name + "-moved")]
        proc = subprocess.Popen(argv)
        end = time.monotonic() + 10
        while True:
            try:
                os.stat(name, dir_fd=cfd)
            except FileNotFoundError:
                break
            if time.monotonic() > end:
                sys.exit(1)
    finally:
        os.kill(n2, signal.SIGCONT)
    if os.path.exists(os.path.join(b, name)):
        print(f"# round {i}: C said gone, B still showed it")
        bad = 1
    if proc.wait() != 0:
        sys.exit(1)
sys.exit(bad)
PY
}
ok "20 removals: once one mount says a name is gone, another node's does too" gone_first rm
ok "20 renames: the same for the old name" gone_first mv
ok "absent names are still answered: a new name is made through n2" \
	bash -c "echo new > '$B/r/new' && test \"\$(cat '$C/r/new')\" = new"
vfs_done
