#!/usr/bin/env python3
"""Print a TCP port on 127.0.0.1 that nobody listens on and no other test claimed.

Why not the kernel's port 0: it hands out ports from the ephemeral range, where any
outgoing connection may take the port between our probe and the server's bind, and two
tests asking at once may get the same one (a CI run failed on "address already in use").
So: a random port below the ephemeral range, claimed by creating a file in a directory
every picker on this machine shares (the Rust harness uses the same one). A claim only
has to cover the moment until the server binds; claims older than two minutes are stale.
"""
import os
import random
import socket
import tempfile
import time

LOW, HIGH = 20000, 32000  # below Linux's default ephemeral range (32768-60999)
STALE = 120


def claim(d, port):
    path = os.path.join(d, str(port))
    try:
        if time.time() - os.stat(path).st_mtime > STALE:
            os.unlink(path)  # stale: free it for a later pick, not for this one
        return False
    except FileNotFoundError:
        pass
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except FileExistsError:
        return False


def bindable(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def main():
    d = os.path.join(tempfile.gettempdir(), "pullguard-ports-%d" % os.getuid())
    os.makedirs(d, exist_ok=True)
    rng = random.SystemRandom()
    for _ in range(10000):
        port = rng.randrange(LOW, HIGH)
        if claim(d, port) and bindable(port):
            print(port)
            return
    raise SystemExit("free_port.py: no free port in %d-%d" % (LOW, HIGH))


main()
