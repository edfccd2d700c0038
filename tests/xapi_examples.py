"""xAPI statements as an LMS sends them, for the training tests."""

from __future__ import annotations

from services.training import xapi


def statement(sid: str, name: str, course: str, verb: str = xapi.VERB_COMPLETED, agency: str = "dga") -> dict:
    """A completion shaped as the xAPI 1.0.3 spec example (simple CBT course), with an account actor and our
    extensions."""
    return {"id": sid, "timestamp": "2026-03-01T10:00:00+07:00",
            "actor": {"objectType": "Agent", "account": {"homePage": "https://lms.dga.or.th", "name": name}},
            "verb": {"id": verb, "display": {"en-US": verb.rsplit("/", 1)[-1]}},
            "object": {"id": course, "definition": {"name": {"th-TH": "หลักสูตรดิจิทัล", "en-US": "Digital course"}}},
            "result": {"score": {"scaled": 0.9}, "success": True, "completion": True, "duration": "PT1H30M"},
            "context": {"extensions": {xapi.EXT_AGENCY: agency, xapi.EXT_COMPETENCY: "digital_technology"}}}
