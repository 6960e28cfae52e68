"""The receiver sample of CMQ's documentation ("HTTP Endpoint subscription"), ported from
Python 2's BaseHTTPServer to Python 3's http.server and otherwise unchanged: one thread,
print the body, answer 200 "ok" (and http.server's log line per request on stderr).

Used as a reference point by the benchmark and by the simulator's tests.

    python3 cmq_sample_receiver.py [PORT]   (default 8080; 0 picks a free port)

Before serving, the bound address goes to stderr as "listening on http://HOST:PORT".
"""

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class TestHTTPHandle(BaseHTTPRequestHandler):
    def do_POST(self):
        content_len = int(self.headers.get("content-length", 0))
        post_body = self.rfile.read(content_len)
        print(post_body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    http_server = HTTPServer(("127.0.0.1", port), TestHTTPHandle)
    host, port = http_server.server_address[:2]
    print(f"listening on http://{host}:{port}", file=sys.stderr, flush=True)
    http_server.serve_forever()


if __name__ == "__main__":
    main()
