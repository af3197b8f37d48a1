#!/usr/bin/env python3
"""A token service an attacker runs: records every request it receives (path and
headers, one JSON line each) to LOG and hands out a token. Listens on 127.0.0.1:PORT.
Usage: capture.py PORT LOG"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, log = int(sys.argv[1]), sys.argv[2]


class Capture(BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": dict(self.headers)}) + "\n")
        body = b'{"token":"captured","expires_in":60}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Capture).serve_forever()
