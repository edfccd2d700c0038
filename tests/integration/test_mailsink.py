"""The local mail sink (`newnormal mailsink`, run by `newnormal up`): the notifier's real e-mail channel sends a
notification with a PDF over SMTP; the message is read back from the Maildir with Python's `mailbox`."""

from __future__ import annotations

import asyncio
import mailbox
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import aiosmtplib

from services.common import processes as px
from services.mailsink import serve
from services.notifier.channels import Delivery, EmailChannel, Outcome
from services.notifier.reports import Attachment
from services.notifier.settings import NotifierSettings
from services.notifier.templates import Message
from tests.support import poll


def _delivery(address: str) -> Delivery:
    message = Message(subject="หมุดหมาย M-1 พลาดกำหนด · Milestone M-1 missed", text="เกินกำหนด 3 วัน · 3 days late",
                      html_renderer=lambda: "<p>เกินกำหนด 3 วัน · 3 days late</p>", title="พลาดกำหนด · Missed",
                      link="http://127.0.0.1:8105/")
    pdf = Attachment(filename="report-2569-Q2.pdf", content=b"%PDF-1.7 test", maintype="application", subtype="pdf")
    return Delivery(notification_id="n-1", key="n-1:email", address=address, message=message, payload={},
                    attachments=(pdf,))


async def test_a_notification_email_lands_in_the_maildir_whole(tmp_path: Path):
    port, maildir = px.free_port(), tmp_path / "mail"
    stopping, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(maildir, port=port, stopping=stopping, started=started))
    try:
        await asyncio.wait_for(started.wait(), 10)
        channel = EmailChannel(NotifierSettings(notifier_smtp_host="127.0.0.1", notifier_smtp_port=port,
                                                notifier_email_from="notifier@newnormal.go.th"))
        result = await channel.send(_delivery("owner@dga.go.th"))
        assert result.outcome is Outcome.sent and result.status == 250
        box = mailbox.Maildir(maildir, create=False)
        [key] = box.keys()
        # The SMTP reply names the stored message: a receipt that finds it.
        assert f"queued as {key}" in result.receipt
        assert box.get_message(key).get_subdir() == "new"  # unread, as a mail client expects a fresh delivery
        msg = message_from_bytes(box.get_bytes(key), policy=policy.default)
        assert msg["Subject"] == "หมุดหมาย M-1 พลาดกำหนด · Milestone M-1 missed"
        assert msg["To"] == "owner@dga.go.th" and msg["Delivered-To"] == "owner@dga.go.th"
        assert msg["Return-Path"] == "<notifier@newnormal.go.th>"
        assert "เกินกำหนด 3 วัน" in msg.get_body(("plain",)).get_content()
        [pdf] = list(msg.iter_attachments())
        assert pdf.get_filename() == "report-2569-Q2.pdf" and pdf.get_content() == b"%PDF-1.7 test"

        # A second recipient set in one transaction: one stored copy, each recipient recorded.
        await aiosmtplib.send("Subject: x\r\n\r\nbody\r\n", sender="a@b.go.th", recipients=["c@d.go.th", "e@f.go.th"],
                              hostname="127.0.0.1", port=port)
        assert len(box) == 2
        other = next(m for k, m in box.items() if k != key)
        assert other.get_all("Delivered-To") == ["c@d.go.th", "e@f.go.th"]
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)


async def test_the_cli_runs_the_sink_as_newnormal_up_does(tmp_path: Path):
    port, maildir = px.free_port(), tmp_path / "mail"
    proc = px.mailsink(port, maildir, tmp_path / "logs").start()
    try:
        async def listening():
            return px.port_open(port)

        await poll(listening, 30, what="mail sink listening")
        await aiosmtplib.send("Subject: hello\r\n\r\nสวัสดี\r\n".encode(), sender="n@x.go.th", recipients=["p@y.go.th"],
                              hostname="127.0.0.1", port=port)
        assert [m["Subject"] for m in mailbox.Maildir(maildir, create=False)] == ["hello"]
    finally:
        proc.stop()
    assert proc.popen is not None and proc.popen.poll() is not None


def test_mailsink_is_a_cli_command():
    out = subprocess.run([sys.executable, "-m", "services.cli", "mailsink", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "Maildir" in out
