#!/usr/bin/env python3
"""A timestamp authority for the tests (RFC 3161 over HTTP, as notation-go's timestamper
asks it): each POSTed TimeStampReq is answered by `openssl ts -reply` with the key and
certificate given. 127.0.0.1 only; stopped by PID.

Usage: tests/notation/tsa.py PORT DIR   (DIR/tsa.cnf, tsa.key, tsa.crt, chain.pem)
"""
import http.server
import subprocess
import sys
import tempfile
from pathlib import Path

port, d = int(sys.argv[1]), Path(sys.argv[2])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        if n > 65536:
            self.send_error(413)
            return
        with tempfile.TemporaryDirectory() as t:
            q, r = Path(t) / "q.tsq", Path(t) / "r.tsr"
            q.write_bytes(self.rfile.read(n))
            done = subprocess.run(
                ["openssl", "ts", "-reply", "-config", str(d / "tsa.cnf"), "-queryfile", str(q),
                 "-inkey", str(d / "tsa.key"), "-signer", str(d / "tsa.crt"), "-chain", str(d / "chain.pem"),
                 "-out", str(r)],
                capture_output=True,
            )
            if done.returncode != 0:
                self.send_error(500, done.stderr.decode(errors="replace")[:200])
                return
            body = r.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
