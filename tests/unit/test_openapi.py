"""The shared OpenAPI completion, validation-error wording and strict parameters (no servers needed)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import TypeAdapter, ValidationError

from services.common import openapi
from services.common.params import ASCII_INTEGER, AgencyFilter, IsoDate, IsoDateTime
from services.contracts import problems
from services.contracts.common_types import NOT_BLANK
from services.contracts.events import ROADMAP_INPUT_TYPES
from services.contracts.feedback import FeedbackResponseSubmitted
from services.contracts.roadmap import MilestoneRescheduled


class FakeAuth:
    async def __call__(self, request: Request) -> str:
        return "dga"

    async def survey_intake(self, request: Request) -> str:
        return "dga"


def build() -> tuple[FastAPI, dict[str, Any]]:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    auth = FakeAuth()
    app = FastAPI()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = problems.describe(exc.errors())
        return JSONResponse({"reason": "invalid_request", "detail": problems.summary(errors), "errors": errors}, 400)

    router = APIRouter(prefix="/v1")

    @router.get("/things", responses=openapi.problem_responses(403, s404="no such thing"))
    async def things(limit: Annotated[int, Query(), ASCII_INTEGER] = 10, day: IsoDate | None = None,
                     agency: AgencyFilter = None, who: str = Depends(auth)) -> dict:
        return {"day": str(day), "agency": agency}

    @router.post("/form", openapi_extra=openapi.merge(openapi.KEYED, openapi.json_body(
        {"type": "object", "required": ["a"], "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"type": "integer"}}},
        name="Form")))
    async def form(request: Request) -> dict:
        return {}

    @router.post("/survey")
    async def survey(who: str = Depends(auth.survey_intake)) -> dict:
        return {}

    @router.post("/events", openapi_extra=openapi.events_body(ROADMAP_INPUT_TYPES, 500))
    async def events(who: str = Depends(auth)) -> dict:
        return {}

    @app.get("/open", responses={404: {"description": "an HTML page", "content": {"text/html": {}}}})
    async def open_route() -> dict:
        return {}

    app.include_router(router)
    openapi.install(app, auth)
    return app, app.openapi()


def test_errors_are_problem_json_and_422_is_gone():
    _, doc = build()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "422" not in op["responses"], (method, path)
            for status, response in op["responses"].items():
                if status[0] in "45":
                    expected = [openapi.PROBLEM, "text/html"] if path == "/open" else [openapi.PROBLEM]
                    assert list(response["content"]) == expected, (method, path, status)
                    assert response["content"][openapi.PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    things = doc["paths"]["/v1/things"]["get"]["responses"]
    assert {"400", "401", "403", "404", "503"} <= set(things) and things["404"]["description"] == "no such thing"
    assert "WWW-Authenticate" in things["401"]["headers"]


def test_keyed_routes_found_through_dependencies_bound_methods_and_marks():
    _, doc = build()
    keyed = {(m, p) for p, item in doc["paths"].items() for m, op in item.items() if op.get("security")}
    assert keyed == {("get", "/v1/things"), ("post", "/v1/form"), ("post", "/v1/survey"), ("post", "/v1/events")}
    assert doc["components"]["securitySchemes"] == {openapi.API_KEY_SCHEME: openapi.SECURITY_SCHEMES[openapi.API_KEY_SCHEME]}
    assert "401" not in doc["paths"]["/open"]["get"]["responses"]


def test_request_bodies_hoist_definitions_into_components():
    _, doc = build()
    schemas = doc["components"]["schemas"]
    assert doc["paths"]["/v1/form"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Form"}
    assert schemas["Form"]["properties"]["a"] == {"$ref": "#/components/schemas/A"} and schemas["A"] == {"type": "integer"}
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert body["application/cloudevents-batch+json"]["schema"]["maxItems"] == 500
    event = schemas["CloudEvent"]
    assert {b["properties"]["type"]["enum"][0] for b in event["oneOf"]} == set(ROADMAP_INPUT_TYPES)
    assert all(b["properties"]["data"]["$ref"].startswith("#/components/schemas/Roadmap") for b in event["oneOf"])
    assert "dga" in schemas["AgencyCode"]["enum"]
    assert "x-newnormal-components" not in str(doc)


def test_405_allow_lists_every_method_of_the_path():
    app, _ = build()
    assert openapi.allowed_methods(app, "/v1/things") == ["GET"]
    assert openapi.allowed_methods(app, "/v1/nothing") == []


@pytest.mark.parametrize("value", ["0", "20260101", "2026-1-1", "0001-01-01", "9999-12-31", "2026-01-01T00:00:00Z"])
def test_iso_date_refuses_what_lax_parsing_would_take(value):
    with pytest.raises(ValidationError):
        TypeAdapter(IsoDate).validate_python(value)
    assert str(TypeAdapter(IsoDate).validate_python("2026-03-01")) == "2026-03-01"


@pytest.mark.parametrize(("value", "reason"), [("2569-01-01", "buddhist_era_date"), ("2899-12-31", "date_out_of_range")])
def test_a_date_parameter_follows_the_wires_one_year_rule(value, reason):
    for adapter, text in ((TypeAdapter(IsoDate), value), (TypeAdapter(IsoDateTime), value + "T00:00:00+07:00")):
        with pytest.raises(ValidationError) as err:
            adapter.validate_python(text)
        [error] = err.value.errors()
        assert error["type"] == reason
    if reason == "buddhist_era_date":
        assert "2569 BE = 2026 CE" in str(err.value)


@pytest.mark.parametrize("value", ["0.5", "1700000000", "2026-03-01T10:00:00", "2026-03-01"])
def test_iso_datetime_needs_rfc3339_with_offset(value):
    with pytest.raises(ValidationError):
        TypeAdapter(IsoDateTime).validate_python(value)
    assert TypeAdapter(IsoDateTime).validate_python("2026-03-01T10:00:00+07:00").utcoffset() is not None


@pytest.mark.parametrize("value", ["1_000", " 5", "5 ", "+5", "0x10", "1e3", "5.0", "\u0665"])
async def test_an_integer_parameter_is_ascii_digits_only(value):
    app, _ = build()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        refused = await client.get("/v1/things", params={"limit": value})
        taken = await client.get("/v1/things", params={"limit": "-5"})
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "query.limit"
    assert taken.status_code == 200


async def test_query_mistakes_are_400_in_our_words_without_the_value():
    app, _ = build()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/v1/things", params={"limit": "lots-of-secret-text", "day": "0", "agency": "atlantis"})
    assert r.status_code == 400
    body = r.json()
    assert {e["field"] for e in body["errors"]} == {"query.limit", "query.day", "query.agency"}
    assert "lots-of-secret-text" not in r.text and "Input should" not in r.text
    assert "query.limit: must be an integer" in body["detail"]


def test_describe_keeps_our_validator_sentences_and_bounds():
    with pytest.raises(ValidationError) as info:
        MilestoneRescheduled.model_validate({"milestone_id": "M-1", "new_due_date": 0, "reason": "x"})
    assert problems.describe(info.value.errors())[0]["detail"] == "new_due_date must be string"
    with pytest.raises(ValidationError) as info:
        MilestoneRescheduled.model_validate({"milestone_id": "M-1", "new_due_date": "2026-01-01", "reason": "x" * 3000})
    assert problems.describe(info.value.errors()) == [
        {"field": "reason", "reason": "string_too_long", "detail": "must be at most 2000 characters long"}]


@pytest.mark.parametrize("field,value", [("satisfaction", "5"), ("aware_of_digital_channels", "yes"),
                                         ("submitted_at", 1700000000), ("satisfaction", True)])
def test_event_data_takes_only_its_schema_json_types(field, value):
    form = {"agency": "dga", "service_name": "x", "channel": "walk_in", "age_group": "25_34", "satisfaction": 4,
            "tech_difficulty": "none", "aware_of_digital_channels": True, "submitted_at": "2026-03-01T10:00:00+07:00"}
    FeedbackResponseSubmitted.model_validate(form)
    with pytest.raises(ValidationError):
        FeedbackResponseSubmitted.model_validate({**form, field: value})


def test_published_schema_states_what_validators_check():
    schema = FeedbackResponseSubmitted.model_json_schema()
    assert "dga" in schema["properties"]["agency"]["enum"]
    assert "TH-10" in schema["properties"]["province"]["anyOf"][0]["enum"]
    assert schema["properties"]["service_name"]["pattern"] == NOT_BLANK  # what stripping keeps (not `\S`)
    assert {tuple(b["required"]) for b in schema["anyOf"]} == {("age_group",), ("birth_year",)}
