"""A value refused by a pattern gets a sentence, never the regex: every pattern a model of ours validates is worded
(`problems.worded`), and an unworded one would at least print no raw control or space character."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import services
from services.contracts import problems
from services.notifier.contacts import Contact


def _our_models() -> list[type[BaseModel]]:
    """The models of the contracts and of every service's modules (imported, never run)."""
    for module in pkgutil.walk_packages(services.__path__, "services."):
        if not module.name.endswith("__main__") and module.name.count(".") == 2:
            importlib.import_module(module.name)
    found, todo = [], list(BaseModel.__subclasses__())
    while todo:
        model = todo.pop()
        todo.extend(model.__subclasses__())
        if model.__module__.startswith("services."):
            found.append(model)
    return found


def _patterns(schema: Any) -> Iterator[str]:
    """The patterns a core schema checks strings against (not those only published in the JSON Schema)."""
    if isinstance(schema, dict):
        if schema.get("type") == "str" and isinstance(schema.get("pattern"), str):
            yield schema["pattern"]
        for value in schema.values():
            yield from _patterns(value)
    elif isinstance(schema, list | tuple):
        for value in schema:
            yield from _patterns(value)


def test_every_pattern_our_models_check_is_worded():
    checked = {(m.__qualname__, p) for m in _our_models() for p in _patterns(m.__pydantic_core_schema__)}
    assert len({p for _, p in checked}) >= 5  # the walk finds them (milestone id, e-mail, LINE id, URL, ...)
    assert [(model, p) for model, p in checked if p not in problems._PATTERN_WORDS] == []


@pytest.mark.parametrize("contact, words", [
    ({"name": "ผอ. กอง", "email": "javascript:alert(1)@example.com"}, "must be one e-mail address"),
    ({"name": "ผอ. กอง", "email": "a b@example.com"}, "must be one e-mail address"),
    ({"name": "P\r\nBcc: x@evil.example", "email": "p@example.com"}, "must be one line"),
    ({"name": "ผอ. กอง", "line": "U123"}, "must be a LINE id"),
])
def test_a_refused_contact_reads_a_sentence(contact: dict, words: str):
    with pytest.raises(ValidationError) as caught:
        Contact.model_validate(contact)
    [described] = problems.describe(caught.value.errors())
    assert described["reason"] == "string_pattern_mismatch" and described["detail"].startswith(words)
    assert "^" not in described["detail"] and described["detail"].isprintable()


def test_an_unworded_pattern_prints_no_raw_control_or_space_character():
    detail = problems.describe([{"type": "string_pattern_mismatch", "loc": ("x",),
                                 "ctx": {"pattern": "^[^\u2028\u00a0\t]+$"}}])[0]["detail"]
    assert detail.startswith("must match the pattern ") and detail.isprintable() and "\\u2028" in detail
