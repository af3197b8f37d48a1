#!/usr/bin/env python3
"""A TLS proxy in front of a real notary-server that holds every upload (POST) until a
file exists (and creates RELEASE_FILE.held when it starts holding one): it makes
"someone else published meanwhile" happen at a known moment.
GETs pass straight through. Uses the notary-server's own certificate (valid for
127.0.0.1), so clients keep the same CA.

Usage: hold-proxy.py PORT UPSTREAM_PORT CERT KEY CA RELEASE_FILE
Writes "ready" on stdout once listening.
"""
import http.client
import http.server
import os
import ssl
import sys
import time

port, upstream, cert, key, ca, release = (
    int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6])
upstream_ctx = ssl.create_default_context(cafile=ca)


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self, body=None):
        conn = http.client.HTTPSConnection("127.0.0.1", upstream, context=upstream_ctx, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "content-length", "accept")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.getheader("Content-Type", "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    def do_GET(self):
        self.forward()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        open(release + ".held", "w").close()
        for _ in range(600):
            if os.path.exists(release):
                break
            time.sleep(0.05)
        self.forward(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Proxy)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
