"""The one intake client over the real broker and database: HTTP through a running service, and Kafka direct."""

from __future__ import annotations

import pytest
from support import cloudevent, db_of, make_key, poll, running
from test_platform import AGENCY_TYPES, SAMPLES, build_app

from services.common.intake_client import HttpIntake, KafkaIntake
from services.common.settings import ServiceSettings

pytestmark = pytest.mark.integration


async def test_http_and_kafka_intake_store_every_valid_event_and_reject_the_rest_with_reasons(settings_for):
    settings = settings_for(ServiceSettings, service_name="intake-client")
    app, _ = build_app(settings)
    key = await make_key(settings, "dga")
    db = db_of(settings)
    async with running(app) as client:
        by_http = [cloudevent(t, SAMPLES[t], agency="dga") for t in AGENCY_TYPES]
        wrong = cloudevent("training.course.completed", {"agency": "dga"}, agency="dga")
        intake = HttpIntake(str(client.base_url), key, client=client)
        outcomes = await intake.send([*by_http, wrong])
        assert [o.status for o in outcomes] == ["accepted"] * len(by_http) + ["rejected"]
        assert outcomes[-1].reason == "invalid_data" and "course_id" in outcomes[-1].detail

        by_kafka = [cloudevent(t, SAMPLES[t], agency="dga") for t in AGENCY_TYPES]
        kafka = await KafkaIntake.start(settings)
        try:
            outcomes = await kafka.send([*by_kafka, {"id": "x", "source": "/agencies/dga/x", "type": "no.such.type"}])
        finally:
            await kafka.close()
        assert [o.status for o in outcomes[:-1]] == ["accepted"] * len(by_kafka)
        assert outcomes[-1].status == "rejected" and outcomes[-1].reason

        ids = [e["id"] for e in by_http + by_kafka]

        async def all_stored() -> bool:
            return await db.events.count_documents({"id": {"$in": ids}}) == len(ids)

        await poll(all_stored, what="every accepted event in the audit trail", timeout=30)
    await db.client.close()
