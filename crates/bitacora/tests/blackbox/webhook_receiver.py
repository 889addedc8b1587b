#!/usr/bin/env python3
"""A webhook receiver for bitacora's delivery tests (crates/bitacora/tests/blackbox/delivery.rs).

Verifies every webhook with the reference Standard Webhooks library (PyPI `standardwebhooks`),
and fails on cue. Prints its port on the first stdout line, then serves until killed.

  POST /hook     a signed webhook: verified with the secret set through /_control; answers
                 204 when accepted, 400 when the signature does not verify, or what /_control
                 queued (500, 502, 503/429 with Retry-After, 410, or `hang` = no answer for 30 s)
  POST /slack    a Slack incoming-webhook message (recorded; no signature)
  POST /hec      a Splunk HEC request (needs `Authorization: Splunk test-token`)
  POST /_control {"secret": "whsec_...", "queue": ["502", "503:1", "hang", "410", ...]}
                 or {"delay": 0.05}: every request waits that many seconds before it is
                 handled (a slow receiver, so a stream is still flowing when a test acts)
                 or {"secrets": [...]}: a webhook is accepted only if it verifies with each
                 of them on its own (a secret being rotated: old and new both sign)
  GET  /_received {"accepted": [...], "attempts": [...], "bad_signatures": n}
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

LOCK = threading.Lock()
STATE = {"secrets": [], "queue": [], "accepted": [], "attempts": [], "bad_signatures": 0,
         "delay": 0.0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        if self.path != "/_received":
            return self.reply(404)
        with LOCK:
            out = json.dumps({k: STATE[k] for k in ("accepted", "attempts", "bad_signatures")})
        self.reply(200, out.encode(), [("Content-Type", "application/json")])

    def do_POST(self):
        body = self.body()
        if self.path == "/_control":
            cue = json.loads(body)
            with LOCK:
                if "secret" in cue:
                    STATE["secrets"] = [cue["secret"]]
                if "secrets" in cue:
                    STATE["secrets"] = list(cue["secrets"])
                STATE["queue"].extend(cue.get("queue", []))
                if "delay" in cue:
                    STATE["delay"] = float(cue["delay"])
            return self.reply(204)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            delay = STATE["delay"]
        if delay:
            time.sleep(delay)
        with LOCK:
            cue = STATE["queue"].pop(0) if STATE["queue"] else None
            STATE["attempts"].append({"path": self.path, "webhook_id": headers.get("webhook-id"),
                                      "cue": cue})
        if cue == "hang":
            time.sleep(30)
            return
        if cue is not None:
            status, _, after = cue.partition(":")
            extra = [("Retry-After", after)] if after else []
            return self.reply(int(status), b"no", extra)
        if self.path == "/hook":
            try:
                with LOCK:
                    secrets = list(STATE["secrets"])
                if not secrets:
                    raise ValueError("no secret set")
                for secret in secrets:
                    payload = Webhook(secret).verify(body, headers)
            except Exception as e:  # noqa: BLE001 - any failure is a bad signature here
                with LOCK:
                    STATE["bad_signatures"] += 1
                return self.reply(400, str(e).encode())
        elif self.path == "/hec":
            if headers.get("authorization") != "Splunk test-token":
                return self.reply(401)
            payload = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        else:
            payload = json.loads(body)
        with LOCK:
            STATE["accepted"].append({"path": self.path, "webhook_id": headers.get("webhook-id"),
                                      "signatures": len(headers.get("webhook-signature", "").split()),
                                      "payload": payload})
        self.reply(204)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
