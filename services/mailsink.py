"""`newnormal mailsink`: a local SMTP server that keeps every message in a Maildir (`newnormal up` runs it).

On a laptop there is no mail server, so without this every notification e-mail of the local stack would
fail and a newcomer would never see one. Each message is stored whole (RFC 5322, headers as received plus
`Return-Path` and `Delivered-To`), one file per message, in `DIR/new/`: Python's `mailbox.Maildir` and any
mail client read it. Local only: it binds to 127.0.0.1 and relays nothing.

The reply to DATA names the stored file like a real MTA's queue id (`250 2.0.0 Ok: queued as KEY`), so a
delivery receipt points at the exact message.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import mailbox
import signal
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

DEFAULT_PORT = 8025
MAX_MESSAGE_BYTES = 25 * 1024 * 1024  # a quarterly report PDF attachment fits with room to spare


class MaildirHandler:
    """aiosmtpd handler: every accepted message becomes one file in the Maildir."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.maildir = mailbox.Maildir(self.directory, create=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode("utf-8")
        key = await asyncio.to_thread(self.store, raw, envelope.mail_from, list(envelope.rcpt_tos))
        return f"250 2.0.0 Ok: queued as {key}"

    def store(self, raw: bytes, mail_from: str | None, rcpt_tos: list[str]) -> str:
        """Add one message (as received) with its envelope sender and recipients; return its Maildir key."""
        msg = message_from_bytes(raw, policy=policy.SMTP)
        # The envelope is not in the message itself: record it as an MTA's local delivery does.
        del msg["Return-Path"]
        msg["Return-Path"] = f"<{mail_from or ''}>"
        for rcpt in rcpt_tos:
            msg["Delivered-To"] = rcpt
        return self.maildir.add(mailbox.MaildirMessage(msg))


async def serve(directory: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                stopping: asyncio.Event | None = None, started: asyncio.Event | None = None) -> None:
    """Run the sink until `stopping` is set (or forever)."""
    handler = MaildirHandler(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=MAX_MESSAGE_BYTES, enable_SMTPUTF8=True, hostname="newnormal-mailsink"),
        host=host, port=port)
    log.info("mail sink listening", extra={"host": host, "port": port, "maildir": str(directory)})
    if started is not None:
        started.set()
    try:
        await (stopping or asyncio.Event()).wait()
    finally:
        server.close()
        await server.wait_closed()


def register(sub: Any) -> None:
    p = sub.add_parser("mailsink", help="local SMTP server storing every message in a Maildir (for `newnormal up`)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--dir", default=".data/mail", help="the Maildir (created if missing)")
    p.set_defaults(func=cmd_mailsink)


def cmd_mailsink(args: argparse.Namespace) -> int:
    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await serve(Path(args.dir), args.host, args.port, stopping)

    asyncio.run(main())
    return 0
