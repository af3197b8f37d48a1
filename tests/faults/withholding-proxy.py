#!/usr/bin/env python3
"""A hostile trust server that holds no keys: a TLS proxy in front of a real
notary-server that answers 404 for every file whose path ends with SUFFIX while the
file SWITCH exists, and passes everything else through unchanged. It stands for the
attacker of docs/threat-model.md who withholds a delegation (targets/releases) so that a
client falls back to an older digest that `targets` still lists.

Uses the notary-server's own certificate (valid for 127.0.0.1), so clients keep the CA.

Usage: withholding-proxy.py PORT UPSTREAM_PORT CERT KEY CA SUFFIX SWITCH
Writes "ready" on stdout once listening.
"""
import http.client
import http.server
import os
import ssl
import sys

port, upstream, cert, key, ca, suffix, switch = (
    int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6],
    sys.argv[7])
upstream_ctx = ssl.create_default_context(cafile=ca)


class Withholding(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if os.path.exists(switch) and self.path.endswith(suffix):
            body = b'{"errors":[{"code":"METADATA_NOT_FOUND"}]}\n'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        conn = http.client.HTTPSConnection("127.0.0.1", upstream, context=upstream_ctx, timeout=30)
        conn.request("GET", self.path, headers={"Accept": self.headers.get("Accept", "*/*")})
        resp = conn.getresponse()
        body = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in ("content-type",):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        conn.close()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Withholding)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
