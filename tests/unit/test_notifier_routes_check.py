"""`newnormal notifier routes check FILE`: explains who is told when, or names the line at fault."""

from __future__ import annotations

from pathlib import Path

from services.cli import main

GOOD = """\
recipients:
  dga-owner: {name: ผู้รับผิดชอบภารกิจ สพร., email: owner@dga.go.th, line: U0123456789abcdef0123456789abcdef}
  director: {name: ผู้อำนวยการกอง, email: d@opdc.go.th}
routes:
  - name: dga
    match: {agency: dga, type: [missed, recovered]}
    recipients: [dga-owner, owner_contacts]
    channels: [email, line]
    reminder_interval: 24h
    escalation:
      - {after: 1 working day, recipients: [director], channels: [email]}
      - {after: 3 working days, recipients: [owner_escalation_contacts]}
"""


def test_a_good_file_is_explained(tmp_path: Path, capsys):
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD, encoding="utf-8")
    assert main(["notifier", "routes", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "route dga: when type missed | recovered, agency dga" in out
    assert "ผู้รับผิดชอบภารกิจ สพร. [dga-owner] by email, line" in out
    assert "the owner agency's responsible people (PUT /v1/contacts)" in out
    assert "a reminder every 1 day (in working hours on Thai working days)" in out
    assert "level 1, 1 วันทำการ · 1 working day (08:30–16:30 Mon–Fri, public holidays excluded) after the miss: " \
           "ผู้อำนวยการกอง [director] by email" in out
    assert "level 2, 3 วันทำการ · 3 working days" in out and "escalation contacts" in out
    assert "an acknowledgement stops reminders" in out


def test_a_bad_file_is_refused_with_the_line_at_fault(tmp_path: Path, capsys):
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD.replace("recipients: [owner_escalation_contacts]", "recipients: [nobody]"), encoding="utf-8")
    assert main(["notifier", "routes", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{path}:5: route 'dga' escalation level 2: unknown recipient 'nobody'")
    path.write_text(GOOD.replace("name: ผู้อำนวยการกอง, email: d@opdc.go.th}", "name: x, emial: d@opdc.go.th}"),
                    encoding="utf-8")
    assert main(["notifier", "routes", "check", str(path)]) == 1
    assert capsys.readouterr().out.startswith(f"{path}:3: recipient 'director': unknown channel 'emial'")
    path.write_text("routes: [\n", encoding="utf-8")
    assert main(["notifier", "routes", "check", str(path)]) == 1
    assert capsys.readouterr().out.startswith(f"{path}:2: ")
