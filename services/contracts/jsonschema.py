"""JSON Schema files for every event type's `data`, for agency integrators.

`newnormal contracts export-schemas` writes them to services/contracts/schemas/; a test fails
when the committed files differ from the models.
"""

from __future__ import annotations

import json
from pathlib import Path

from services.contracts.events import EVENT_TYPES

SCHEMA_DIR = Path(__file__).parent / "schemas"


def schema_of(type_name: str) -> dict:
    event_type = EVENT_TYPES[type_name]
    schema = event_type.model.model_json_schema(mode="validation")
    schema["$id"] = event_type.dataschema
    schema["title"] = type_name
    schema["description"] = (f"`data` of CloudEvents type `{type_name}` on topic `{event_type.topic}`"
                             + (" (published by the monitoring services only)" if event_type.derived else ""))
    return schema


def render_all() -> dict[str, str]:
    return {f"{name}.json": json.dumps(schema_of(name), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
            for name in sorted(EVENT_TYPES)}


def export(out: str | Path | None = None) -> list[Path]:
    directory = Path(out) if out else SCHEMA_DIR
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in render_all().items():
        path = directory / filename
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
