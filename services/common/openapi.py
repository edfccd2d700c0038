"""The OpenAPI documents of every service: errors, security and request bodies described once, here.

Routes declare what only they know (`responses=problem_responses(403, 404)`, a request body built from the
contracts' JSON Schemas with `events_body(...)` / `json_body(...)`, `KEYED` when they authenticate by hand);
`install(app, auth)` completes each document when it is first served:

- every 4xx/5xx answer is `application/problem+json` with the `Problem` schema;
- FastAPI's 422 is gone: request-validation errors are 400 `invalid_request` like every other malformed input
  ("same mistake, same status"), documented on every operation that takes parameters or a body;
- operations that need an API key (found through their dependency on the `ApiKeyAuth` instance, or marked
  `KEYED`) carry the `ApiKey` security requirement and document 401, and 503 (key store unreachable).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import compile_path

from services.common import params
from services.contracts import envelope
from services.contracts.jsonschema import schema_of

PROBLEM = "application/problem+json"
API_KEY_SCHEME = "ApiKey"
KEYED: dict[str, Any] = {"security": [{API_KEY_SCHEME: []}]}
ALERTMANAGER_SCHEME = "AlertmanagerBearer"
ALERTMANAGER_BASIC_SCHEME = "AlertmanagerBasic"
# The Alertmanager receiver: its own credential (Alertmanager's http_config), bearer or basic.
ALERTMANAGER_AUTH: dict[str, Any] = {"security": [{ALERTMANAGER_SCHEME: []}, {ALERTMANAGER_BASIC_SCHEME: []}]}
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    API_KEY_SCHEME: {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "An agency, programme-office or survey key from `newnormal keys create`; "
                       "`Authorization: Bearer <key>` is accepted too."},
    ALERTMANAGER_SCHEME: {"type": "http", "scheme": "bearer",
                          "description": "NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN (http_config.authorization)"},
    ALERTMANAGER_BASIC_SCHEME: {"type": "http", "scheme": "basic",
                                "description": "user NEWNORMAL_NOTIFIER_ALERTMANAGER_USERNAME, password the token "
                                               "(http_config.basic_auth)"},
}
_COMPONENTS = "x-newnormal-components"  # schemas a route's openapi_extra brings along; moved into components
_REF = "#/components/schemas/"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details. `reason` is the stable, machine-readable code to branch on; "
                   "`detail` is for people and never echoes submitted values.",
    "type": "object",
    "required": ["type", "status", "reason", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:newnormal:problem:<reason>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "reason": {"type": "string", "pattern": "^[a-z0-9_]+$"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "description": "per-field or per-event problems",
                   "items": {"type": "object", "additionalProperties": True}},
    },
    "additionalProperties": True,
}

DESCRIPTIONS = {
    400: "Invalid request (`reason` says what: invalid_request, unknown_agency, invalid_json, ...)",
    401: "Missing, unknown, revoked or expired credential",
    403: "The credential may not do this (another agency's data, or a role without this right)",
    404: "No such record (or not visible to this key)",
    405: "Method not allowed",
    409: "Conflicts with what is already stored",
    413: "Request body or batch too large",
    415: "Unsupported Content-Type",
    429: "Rate limited: retry after `Retry-After` seconds",
    503: "A dependency (Kafka or MongoDB) is unavailable: retry after `Retry-After` seconds",
}

_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "authentication scheme"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description or DESCRIPTIONS.get(status, "Error"),
                                 "content": {PROBLEM: {"schema": {"$ref": _REF + "Problem"}}}}
    if status in _HEADERS:
        response["headers"] = copy.deepcopy(_HEADERS[status])
    return response


def problem_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: `problem_responses(403, 404, s409="a different statement is stored")`."""
    out: dict[int | str, dict[str, Any]] = {s: problem_response(s) for s in statuses}
    for key, text in descriptions.items():
        status = int(key.lstrip("s"))
        out[status] = problem_response(status, text)
    return out


# --- request bodies from the contracts -------------------------------------------------------------------


def _hoist(schema: Mapping[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema with `$defs` as an OpenAPI schema: definitions move into components, refs follow."""
    schema = copy.deepcopy(dict(schema))
    defs = schema.pop("$defs", {})
    schema.pop("$id", None)
    for name, definition in defs.items():
        components.setdefault(name, definition)
    return _rewrite_refs(schema)


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (_REF + v.rsplit("/", 1)[1] if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/")
                    else _rewrite_refs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _component_name(type_name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", type_name)) + "Data"


def data_schema(type_name: str, components: dict[str, Any]) -> dict[str, Any]:
    """A `$ref` to the data schema of one event type, registering it (and its definitions) in `components`."""
    name = _component_name(type_name)
    if name not in components:
        components[name] = _hoist(schema_of(type_name), components)
    return {"$ref": _REF + name}


def agency_code_schema() -> dict[str, Any]:
    return {"title": "AgencyCode", **params.agency_code_schema()}


def cloudevent_schema(types: Iterable[str], components: dict[str, Any]) -> dict[str, Any]:
    """A structured-mode CloudEvent whose `type` and `data` are one of `types` (oneOf, one branch per type)."""
    components.setdefault("AgencyCode", agency_code_schema())
    # Names an extension may not take: the standard attributes, ours, and `authority` (the intake's to set).
    standard = sorted(envelope._STANDARD | {"agency", "partitionkey", "data", "data_base64", envelope.AUTHORITY})
    extension = f"^(?!(?:{'|'.join(standard)})$)[a-z0-9]{{1,20}}$"
    branches = []
    for type_name in sorted(types):
        branches.append({
            "title": f"CloudEvent {type_name}",
            "description": "`source` lies in the agency's namespace `/agencies/{agency}/`, and an agency named in "
                           "`data` (`agency`, `owner_agency`) is the event's `agency`.",
            "type": "object",
            "required": ["specversion", "id", "source", "type", "agency", "data"],
            "properties": {
                "specversion": {"type": "string", "enum": ["1.0"]},
                "id": {"type": "string", "pattern": "^[!-~]{1,200}$",
                       "description": "unique within the source; a repeated source+id is stored once"},
                "source": {"type": "string", "pattern": "^/agencies/[a-z0-9_]+/[!-~]{0,200}$",
                           "description": "must start with `/agencies/{agency}/`: the agency's own namespace"},
                "type": {"type": "string", "enum": [type_name]},
                "agency": {"$ref": _REF + "AgencyCode"},
                "time": {"type": "string", "format": "date-time", "description": "RFC 3339 with an offset"},
                "datacontenttype": {"type": "string", "enum": ["application/json"]},
                # No own length limits: the whole event is limited (MAX_EVENT_BYTES).
                "dataschema": {"type": "string", "minLength": 1},
                "subject": {"type": "string", "minLength": 1},
                "partitionkey": {"type": ["string", "null"]},
                "data": data_schema(type_name, components),
            },
            "patternProperties": {extension: {
                "type": ["string", "boolean", "integer", "null"],
                "description": "extension attribute: kept as its CloudEvents canonical string (a boolean as "
                               "true/false, an integer as its digits); null is as if it were absent"}},
            "additionalProperties": False,
        })
    return branches[0] if len(branches) == 1 else {"oneOf": branches}


def events_body(types: Iterable[str], max_events: int) -> dict[str, Any]:
    """`openapi_extra` of `POST /v1/events`: structured and batched modes from the contracts' schemas."""
    components: dict[str, Any] = {}
    event = cloudevent_schema(types, components)
    components["CloudEvent"] = event
    ref = {"$ref": _REF + "CloudEvent"}
    return {
        "requestBody": {
            "required": True,
            "description": (
                f"`{envelope.STRUCTURED}`: one event. `{envelope.BATCH}`: a JSON array of up to {max_events} events "
                "(an empty one is a batch of nothing: 202). "
                "Binary mode: the `data` object as the body (`Content-Type: application/json`) with the attributes "
                "as `ce-specversion`, `ce-id`, `ce-source`, `ce-type` and `ce-agency` headers, percent-encoded "
                "as the CloudEvents HTTP binding writes them. "
                f"An event may be at most {envelope.MAX_EVENT_BYTES} bytes."),
            "content": {
                envelope.STRUCTURED: {"schema": ref},
                envelope.BATCH: {"schema": {"type": "array", "items": ref, "maxItems": max_events}},
            },
        },
        _COMPONENTS: components,
    }


def json_body(schema: Mapping[str, Any], *, description: str = "", media_type: str = "application/json",
              name: str | None = None) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself (the body limit is checked before parsing)."""
    components: dict[str, Any] = {}
    body = _hoist(schema, components)
    if name:
        components[name] = body
        body = {"$ref": _REF + name}
    return {"requestBody": {"required": True, "description": description, "content": {media_type: {"schema": body}}},
            _COMPONENTS: components}


def data_body(type_name: str, *, optional: Iterable[str] = (), description: str = "") -> dict[str, Any]:
    """`openapi_extra` for a plain-JSON form that is one event type's `data` (fields in `optional` may be left
    out: the server fills them, e.g. `agency` from the key)."""
    schema = copy.deepcopy(schema_of(type_name))
    schema["required"] = [name for name in schema.get("required", ()) if name not in set(optional)]
    schema["title"] = _component_name(type_name).removesuffix("Data") + "Form"
    return json_body(schema, description=description, name=schema["title"])


def merge(*extras: Mapping[str, Any]) -> dict[str, Any]:
    """Several `openapi_extra` fragments as one (e.g. `merge(KEYED, json_body(...))`)."""
    out: dict[str, Any] = {}
    for extra in extras:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = copy.deepcopy(value)
    return out


# --- completing the document --------------------------------------------------------------------------------


def _api_routes(app: FastAPI) -> Iterator[APIRoute]:
    """Every API route with its effective path, included routers too (FastAPI >= 0.16x nests them)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is None:
        yield from (route for route in app.routes if isinstance(route, APIRoute))
        return
    from fastapi.openapi.utils import _get_api_route_for_openapi

    for context in iterate(app.routes):
        route = _get_api_route_for_openapi(context)
        if route is not None:
            yield route


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method any route offers on `path`, for a 405's `Allow` (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in _api_routes(app):
        if compile_path(route.path_format)[0].match(path):
            methods.update(route.methods)
    return sorted(methods)


def _needs(route: APIRoute, auth: object) -> bool:
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant.call is auth or getattr(dependant.call, "__self__", None) is auth:  # or one of its methods
            return True
        stack.extend(dependant.dependencies)
    return False


def complete(document: dict[str, Any], keyed: set[tuple[str, str]]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    used: set[str] = set()
    for path, item in document.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for name, schema in op.pop(_COMPONENTS, {}).items():
                schemas.setdefault(name, schema)
            responses = op["responses"]
            responses.pop("422", None)
            if (method.upper(), path) in keyed and "security" not in op:
                op["security"] = copy.deepcopy(KEYED["security"])
            for requirement in op.get("security", ()):
                used.update(requirement)
            if op.get("security"):
                responses.setdefault("401", problem_response(401))
            if any(API_KEY_SCHEME in req for req in op.get("security", ())):
                responses.setdefault("503", problem_response(503))  # the key store may be unreachable
            if op.get("parameters") or op.get("requestBody"):
                responses.setdefault("400", problem_response(400))
            if op.get("requestBody"):  # a declared Content-Type that is not JSON (http_ingest.read_json)
                responses.setdefault("415", problem_response(415))
            for status, response in list(responses.items()):
                if status[:1] in ("4", "5"):
                    fresh = problem_response(int(status), response.get("description"))
                    # A media type the route declares on purpose (an HTML error page) is kept beside the problem.
                    fresh["content"].update({media: spec for media, spec in response.get("content", {}).items()
                                             if media != "application/json"})
                    fresh["headers"] = {**fresh.get("headers", {}), **response.get("headers", {})}
                    if not fresh["headers"]:
                        fresh.pop("headers")
                    responses[status] = fresh
    if used:
        components.setdefault("securitySchemes", {}).update({name: SECURITY_SCHEMES[name] for name in sorted(used)})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def install(app: FastAPI, auth: object) -> None:
    """Replace `app.openapi` by the completed document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            keyed = {(method, route.path_format) for route in _api_routes(app) if _needs(route, auth)
                     for method in route.methods}
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes, tags=app.openapi_tags, servers=app.servers)
            app.openapi_schema = complete(document, keyed)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
