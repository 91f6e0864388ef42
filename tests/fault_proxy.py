"""A small fault-injecting HTTP proxy in front of the GCS emulator, on 127.0.0.1.

The emulator enforces no IAM and never fails half-way; real GCS does both. The proxy forwards every
request to the emulator unchanged unless a rule matches it:

- `deny(method, path_regex, status, message)`: answer with a JSON error as GCS does (e.g. 403 to a
  bucket-metadata read, which `roles/storage.objectUser` is refused);
- `hold(regex)`: make matching requests (by path or body: an upload names its object in its body)
  wait until `clear()`, so a test can kill a writer while its upload is cut off; requests still
  held when the proxy closes are dropped unanswered, never forwarded (a writer that abandoned
  them must not see them land later);
- `stall_media(after_bytes)`: send only the first bytes of an object download, then hang, so a
  test can kill the downloader half-way.

Point clients at `proxy.endpoint` (STORAGE_EMULATOR_HOST). `requests` lists every request seen.
"""

from __future__ import annotations

import http.client
import http.server
import json
import re
import threading
import time
import urllib.parse


class FaultProxy:
    def __init__(self, upstream: str):
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.rules: list[tuple[str, re.Pattern, int, str]] = []
        self.stall_after: int | None = None
        self.held: list[re.Pattern] = []  # requests whose path or body match wait until cleared
        self.holding = 0  # how many requests `hold` has stopped so far
        self.closed = False
        self.requests: list[tuple[str, str]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.requests.append((self.command, self.path))
                if any(p.search(self.path) or p.search(body.decode("latin-1")) for p in proxy.held):
                    proxy.holding += 1
                while any(p.search(self.path) or p.search(body.decode("latin-1")) for p in proxy.held):
                    time.sleep(0.05)  # a stalled upload: the writer can be killed half-way
                    if proxy.closed:
                        self.close_connection = True
                        return
                for method, pattern, status, message in proxy.rules:
                    if method in (self.command, "*") and pattern.search(self.path):
                        return self._reply(status, json.dumps(
                            {"error": {"code": status, "message": message,
                                       "errors": [{"message": message}]}}).encode())
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                media = "alt=media" in self.path and self.command == "GET"
                if media and proxy.stall_after is not None and response.status == 200:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: proxy.stall_after])
                    self.wfile.flush()
                    time.sleep(3600)  # the client waits for the rest until it is killed
                    return
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _reply(self, status: int, data: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # a client that hung up: not news
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def deny(self, method: str, path_regex: str, status: int = 403, message: str = "denied") -> None:
        self.rules.append((method, re.compile(path_regex), status, message))

    def hold(self, regex: str) -> None:
        """Make requests whose path or body match `regex` wait until `clear()`."""
        self.held.append(re.compile(regex))

    def stall_media(self, after_bytes: int) -> None:
        self.stall_after = after_bytes

    def clear(self) -> None:
        self.rules.clear()
        self.stall_after = None
        self.held.clear()
        self.holding = 0

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closed = True
        self._server.shutdown()
        self._server.server_close()
