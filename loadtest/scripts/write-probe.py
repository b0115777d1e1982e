#!/usr/bin/env python3
"""Is the disk holding up small appends? python3 write-probe.py SECONDS [FILE]

Appends 150 bytes to FILE (default /tmp/wlat.bin) every millisecond with
O_APPEND, as the token log does, and fdatasyncs it every second from
another thread, as its sync thread does; times each write and sync. Run it
beside whatever is suspected (a big `dd`, a build, an `rm -rf`) and read
how many writes took over 5 ms and the longest."""
import os, sys, threading, time

seconds = float(sys.argv[1])
path = sys.argv[2] if len(sys.argv) > 2 else "/tmp/wlat.bin"
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
buf = b"x" * 150
end = time.time() + seconds
syncs = []

def syncer():
    while time.time() < end:
        t = time.perf_counter()
        os.fdatasync(fd)
        syncs.append(time.perf_counter() - t)
        time.sleep(1)

threading.Thread(target=syncer, daemon=True).start()
slow, n = [], 0
while time.time() < end:
    t = time.perf_counter()
    os.write(fd, buf)
    d = time.perf_counter() - t
    n += 1
    if d > 0.005:
        slow.append((time.strftime("%H:%M:%S"), round(d * 1000, 1)))
    time.sleep(0.001)
print(f"writes {n}, over 5 ms: {len(slow)}, longest {max((s[1] for s in slow), default=0)} ms")
print("slow writes (time, ms):", slow[:30])
print(f"syncs {len(syncs)}, longest {max(syncs, default=0) * 1000:.1f} ms")
os.unlink(path)
