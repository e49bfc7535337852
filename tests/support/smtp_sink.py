#!/usr/bin/env python3
"""A real SMTP server for the e-mail tests: aiosmtpd, recording every message it accepts.

    smtp_sink.py --out FILE [--port N] [--tls-cert PEM --tls-key PEM --tls-mode starttls|implicit]
                 [--auth USER:PASSWORD]

Listens on 127.0.0.1 (port 0 = any free port), prints `READY <port>` on stdout once it
accepts connections, and appends one JSON line per accepted message to FILE:
`{"mail_from", "rcpt_tos", "data", "tls", "auth_user", "headers", "content_type", "charset",
"body"}`: `data` is the raw message as sent; `headers` (`[name, value]` pairs), the content
type and the body are decoded by Python's `email` package.

Recipients whose local part starts with `reject` get `550` (a permanent refusal), those
starting with `tempfail` get `451` (a transient one). With `--tls-mode starttls` the server
offers STARTTLS and refuses mail before it; with `implicit` it speaks TLS from the first byte.
With `--auth` it requires AUTH (PLAIN/LOGIN) with those credentials, over plain text too.

Needs `aiosmtpd` (pip install aiosmtpd); exits with status 3 and a message when it is missing.
Stops on SIGTERM/SIGINT or when its standard input closes.
"""

import argparse
import asyncio
import email
import email.policy
import json
import signal
import ssl
import sys

try:
    from aiosmtpd.smtp import SMTP, AuthResult
except ImportError as exc:  # pragma: no cover - reported to the test
    print(f"smtp_sink: aiosmtpd is not importable ({exc}); pip install aiosmtpd", file=sys.stderr)
    sys.exit(3)


class Recorder:
    def __init__(self, path):
        self.path = path

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 No such user here"
        if local.startswith("tempfail"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        auth_user = None
        if session.authenticated and session.auth_data is not None:
            auth_user = session.auth_data.login.decode("utf-8", "replace")
        raw = envelope.original_content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain", "html"))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": raw.decode("utf-8", "replace"),
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "auth_user": auth_user,
            # Decoded by Python's own e-mail parser, independent of the sender's library.
            "headers": [[name, str(value)] for name, value in parsed.items()],
            "content_type": parsed.get_content_type(),
            "charset": parsed.get_content_charset(),
            "body": body.get_content() if body is not None else None,
        }
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
            out.flush()
        return "250 2.0.0 Message accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-mode", choices=["starttls", "implicit"])
    parser.add_argument("--auth")
    args = parser.parse_args()

    context = None
    if args.tls_mode:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)

    authenticator = None
    if args.auth:
        user, _, password = args.auth.partition(":")

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                auth_data.login.decode("utf-8", "replace") == user
                and auth_data.password.decode("utf-8", "replace") == password
            )
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    handler = Recorder(args.out)

    def factory():
        kwargs = {"hostname": "sink.test"}
        if args.tls_mode == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        if authenticator is not None:
            kwargs.update(
                authenticator=authenticator, auth_required=True, auth_require_tls=False
            )
        return SMTP(handler, **kwargs)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(
            factory,
            host="127.0.0.1",
            port=args.port,
            ssl=context if args.tls_mode == "implicit" else None,
        )
    )
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The test holds our stdin: when it dies, we stop too.
    def on_stdin():
        if not sys.stdin.buffer.read1(4096):
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    loop.run_until_complete(stop.wait())
    server.close()
    loop.run_until_complete(server.wait_closed())


if __name__ == "__main__":
    main()
