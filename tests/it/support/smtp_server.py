#!/usr/bin/env python3
"""A real SMTP server for the email notifier's tests (aiosmtpd).

    smtp_server.py --port P --out DIR [--user U --password W] [--tls-mode starttls|implicit|none]
                   [--fail-first N --fail-code 451]

Listens on 127.0.0.1:P. With a user, AUTH PLAIN/LOGIN is offered and
required (only over TLS). STARTTLS (or implicit TLS) uses a self-signed
certificate made at start with openssl. Each accepted message is written
to DIR as N.eml (the raw content) and N.json (envelope plus a summary of
the parsed MIME: headers and the decoded text of each part). The first N
messages (at DATA) are answered with the given SMTP code instead.

Prints "READY" on standard output once it accepts connections; exits when
standard input closes (so it never outlives the test that started it).
"""

import argparse
import email
import email.policy
import json
import logging
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def make_context(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-days", "1", "-keyout", key, "-out", cert],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def summary(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        parts.append({"content_type": part.get_content_type(), "text": part.get_content()})
    return {
        "headers": {k.lower(): str(v) for k, v in msg.items()},
        "to": [str(a) for a in msg.get_all("to", [])],
        "content_type": msg.get_content_type(),
        "parts": parts,
    }


class Handler:
    def __init__(self, out, fail_first, fail_code):
        self.out = out
        self.fail_left = fail_first
        self.fail_code = fail_code
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.fail_left > 0:
                self.fail_left -= 1
                return f"{self.fail_code} Test failure, try again later"
            self.count += 1
            n = self.count
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        base = os.path.join(self.out, str(n))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(raw)
        record = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos), "message": summary(raw)}
        with open(base + ".json.tmp", "w") as f:
            json.dump(record, f, indent=1)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 OK"


def main():
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
    # aiosmtpd's warnings about our deliberate test settings are noise.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--tls-mode", choices=["starttls", "implicit", "none"], default="starttls")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-code", type=int, default=451)
    a = p.parse_args()

    tmp = tempfile.mkdtemp(prefix="zkalert-smtp-")
    ctx = make_context(tmp) if a.tls_mode != "none" else None

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == a.user
            and auth_data.password.decode() == a.password
        )
        # handled=False: aiosmtpd answers 535 itself on a failure.
        return AuthResult(success=ok, handled=False)

    kwargs = {}
    if a.user is not None:
        # aiosmtpd only counts STARTTLS as TLS for auth_require_tls: with
        # implicit TLS the whole connection is encrypted anyway.
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=a.tls_mode == "starttls")
    if a.tls_mode == "starttls":
        kwargs.update(tls_context=ctx, require_starttls=True)
    elif a.tls_mode == "implicit":
        kwargs.update(ssl_context=ctx)

    handler = Handler(a.out, a.fail_first, a.fail_code)
    controller = Controller(handler, hostname="127.0.0.1", port=a.port, server_hostname="localhost",
                            ready_timeout=5, **kwargs)
    controller.start()
    print("READY", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
