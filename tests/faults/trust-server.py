#!/usr/bin/env python3
"""A misbehaving trust server for fault-injection tests (stands in for a notary-server
that has gone wrong). Listens on 127.0.0.1:PORT and behaves per MODE on every request:

  blackhole  accept TCP connections and never answer (not even TLS)
  drip       TLS, then an HTTP answer one byte per second
  huge       TLS, 200 with Content-Length of 10 GB, streamed as fast as possible
  garbage    TLS, 200 with random bytes
  error      TLS, 500 Internal Server Error
  (TLS with a certificate for another name is `garbage` with CERT/KEY for that name)

Usage: trust-server.py MODE PORT CERT KEY   (writes "ready" on stdout once listening)
"""
import os
import socket
import ssl
import sys
import threading
import time

mode, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(64)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
print("ready", flush=True)
held = []


def serve(conn):
    try:
        if mode == "blackhole":
            held.append(conn)
            return
        tls = ctx.wrap_socket(conn, server_side=True)
        tls.recv(65536)
        if mode == "drip":
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"{" * 100:
                tls.sendall(bytes([b]))
                time.sleep(1)
        elif mode == "huge":
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\n\r\n")
            chunk = b"0" * 65536
            for _ in range(10737418240 // 65536):
                tls.sendall(chunk)
        elif mode == "garbage":
            body = os.urandom(4096)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        elif mode == "error":
            tls.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops\n")
        tls.close()
    except (OSError, ssl.SSLError):
        pass


while True:
    c, _ = listener.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
