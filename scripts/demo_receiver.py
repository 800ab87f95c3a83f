#!/usr/bin/env python3
"""The demo's webhook receiver: verifies every request with the reference
`standardwebhooks` library and prints the events it accepted, one JSON line each."""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook

secret = os.environ["WEBHOOK_SECRET"]
out_path = os.environ["RECEIVED_FILE"]
verifier = Webhook(secret)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            verifier.verify(body, headers)
        except Exception as error:  # a bad signature is refused, not trusted
            self.send_response(400)
            self.end_headers()
            print(f"receiver: REJECTED {headers.get('webhook-id')}: {error}", file=sys.stderr)
            return
        event = json.loads(body)
        with open(out_path, "a") as out:
            out.write(json.dumps({"webhook_id": headers["webhook-id"], "verified": True, "event": event}) + "\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "9099"))), Handler).serve_forever()
