#!/usr/bin/env python3
"""An SMTP sink for bitacora's email delivery tests (crates/bitacora/tests/blackbox/delivery.rs).

A real SMTP server (PyPI `aiosmtpd`) on 127.0.0.1, port chosen by the system and printed on the
first stdout line. Every message it accepts is appended to OUT_FILE as one JSON line
{"mail_from", "rcpt_tos", "data", "subject", "message_id", "body"}, `body` being the text part
decoded (quoted-printable or base64) by the standard library's email parser. With `--fail-first N`, the first N messages are refused with
`451` (a transient failure the sender must retry).

  python3 smtp_sink.py OUT_FILE [--fail-first N]
"""

import argparse
import asyncio
import email
import email.policy
import json
import sys
import threading

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, out, fail_first):
        self.out = out
        self.fail_left = fail_first
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.fail_left > 0:
                self.fail_left -= 1
                return "451 4.3.0 try again later"
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            with open(self.out, "a", encoding="utf-8") as f:
                f.write(json.dumps({
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "data": envelope.content.decode("utf-8", "replace"),
                    "subject": str(message["subject"]),
                    "message_id": str(message["message-id"]),
                    "body": message.get_content(),
                }) + "\n")
        return "250 OK"


async def serve(args):
    sink = Sink(args.out, args.fail_first)
    loop = asyncio.get_running_loop()
    # Port 0 on the loop's own server: no race for a port picked beforehand.
    server = await loop.create_server(lambda: SMTP(sink, hostname="sink.test"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--fail-first", type=int, default=0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
