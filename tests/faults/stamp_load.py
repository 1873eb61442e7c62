#!/usr/bin/env python3
# The load of test_stamp.sh: stamp_load.py MOUNT_A MOUNT_B SECONDS OUT.
#
# Keys reg/x0..x3 and reg/y (created first). Three writers of y through B
# keep a cache notice open nearly all the time (with the failpoint
# notice_delay_ms); one writer per x key writes it through A at a random
# moment of each notice's time (a write is answered when its notice has
# been acted on); six readers, three per mount, read a random x key every
# 5-15 ms, so that reads come both before and after a write that joins the
# same notice. Every operation goes to OUT/hist-P as faultclient writes it
# (lincheck's input).
import os, random, sys, threading, time

mount_a, mount_b, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
deadline = time.monotonic_ns() + int(seconds * 1e9)

def write(path, value):
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)

def writer(process, mount, key, pause=0.0):
    with open(f"{out}/hist-{process}", "w") as h:
        h.write(f"# process {process} mount {os.path.basename(mount)}\n")
        i = 0
        while time.monotonic_ns() < deadline:
            i += 1
            value = f"{key}-{process}-{i}"
            # Into the middle of a notice's time, after reads of the key.
            time.sleep(random.uniform(0, pause))
            t0 = time.monotonic_ns()
            try:
                write(f"{mount}/reg/{key}", value)
                outcome = "ok"
            except OSError:
                outcome = "unknown"
            t1 = time.monotonic_ns()
            h.write(f"{process} w {key} {value} {t0} {t1 if outcome == 'ok' else 0} {outcome}\n")

def reader(process, mount, keys):
    with open(f"{out}/hist-{process}", "w") as h:
        h.write(f"# process {process} mount {os.path.basename(mount)}\n")
        while time.monotonic_ns() < deadline:
            time.sleep(random.uniform(0.005, 0.015))
            key = random.choice(keys)
            t0 = time.monotonic_ns()
            try:
                with open(f"{mount}/reg/{key}") as f:
                    value, outcome = f.read() or "<empty>", "ok"
                value = "".join("_" if c.isspace() else c for c in value)
            except OSError:
                value, outcome = "-", "fail"
            t1 = time.monotonic_ns()
            h.write(f"{process} r {key} {value} {t0} {t1} {outcome}\n")

with open(f"{out}/hist-99", "w") as h:
    h.write(f"# process 99 mount {os.path.basename(mount_a)}\n")
    for key in ("x0", "x1", "x2", "x3", "y"):
        t0 = time.monotonic_ns()
        write(f"{mount_a}/reg/{key}", f"{key}-99-0")
        h.write(f"99 w {key} {key}-99-0 {t0} {time.monotonic_ns()} ok\n")
# The writers of y keep a notice open nearly all the time; each x key is
# written at a random moment of it, while readers of the x keys come and go.
xkeys = ["x0", "x1", "x2", "x3"]
threads = [threading.Thread(target=writer, args=(i, mount_a, k, 0.030))
           for i, k in enumerate(xkeys)]
threads += [threading.Thread(target=writer, args=(4 + i, mount_b, "y")) for i in range(3)]
threads += [threading.Thread(target=reader, args=(7 + i, (mount_a, mount_b)[i % 2], xkeys))
            for i in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
