"""StatementRef filter-through keys (xAPI 1.0.3 Communication 2.1.3 "Filter Conditions for StatementRefs")."""

from __future__ import annotations

from services.training import xapi

SID = "3f0bd2a4-6bbf-4bd3-9c11-5f3c2a1b0c9d"


def test_statement_ref_is_the_lower_cased_target_id_of_a_statementref_object_only():
    assert xapi.statement_ref({"object": {"objectType": "StatementRef", "id": SID.upper()}}) == SID
    assert xapi.statement_ref({"object": {"id": "http://x/activity"}}) is None
    assert xapi.statement_ref({"object": {"objectType": "StatementRef", "id": "not-a-uuid"}}) is None
    assert xapi.statement_ref({"object": {"objectType": "StatementRef", "id": 7}}) is None
    assert xapi.statement_ref({"object": "StatementRef"}) is None
    # A SubStatement's StatementRef is not a target of the statement itself.
    assert xapi.statement_ref({"object": {"objectType": "SubStatement",
                                          "object": {"objectType": "StatementRef", "id": SID}}}) is None


def test_ref_keys_take_the_targets_filter_values_at_depth_one():
    target = {"_id": SID, "agency": "dga", "learner": "h1", "verb": "http://v/done", "activity": "http://a/1",
              "registration": None, "activities": ["http://a/1", "http://a/cat"], "agents": ["h1", "h2"],
              "statement": "{...}", "stored": "x"}
    assert xapi.ref_keys(target) == sorted([
        "1|learner|h1", "1|verb|http://v/done", "1|activity|http://a/1", "1|activities|http://a/1",
        "1|activities|http://a/cat", "1|agents|h1", "1|agents|h2"])


def test_ref_keys_follow_the_targets_own_targets_one_level_deeper_up_to_the_bound():
    deep = [f"{d}|verb|http://v/{d}" for d in range(1, xapi.MAX_REF_DEPTH + 1)]
    keys = xapi.ref_keys({"verb": "http://v/0", "ref_keys": [*deep, "junk", "x|verb|y"]})
    assert keys == sorted(["1|verb|http://v/0"] + [f"{d + 1}|verb|http://v/{d}" for d in range(1, xapi.MAX_REF_DEPTH)])
    assert all(int(k.split("|")[0]) <= xapi.MAX_REF_DEPTH for k in keys)


def test_deepen_moves_keys_up_a_chain_and_drops_what_passes_the_bound():
    keys = ["1|verb|a", "2|verb|b"]
    assert xapi.deepen(keys, 1) == keys
    assert xapi.deepen(keys, 2) == ["2|verb|a", "3|verb|b"]
    assert xapi.deepen(keys, xapi.MAX_REF_DEPTH) == [f"{xapi.MAX_REF_DEPTH}|verb|a"]
    assert xapi.deepen(keys, xapi.MAX_REF_DEPTH + 1) == []


def test_filter_through_is_own_fields_or_one_target_meeting_every_condition():
    assert xapi.filter_through({}) == []
    own, *through = xapi.filter_through({"verb": ["http://v"], "learner": ["h1", "h2"]})
    assert own == {"verb": "http://v", "learner": {"$in": ["h1", "h2"]}}
    assert len(through) == xapi.MAX_REF_DEPTH
    # Several conditions are met at ONE depth (one target), never pieced together from different targets.
    assert through[1] == {"$and": [{"ref_keys": {"$in": ["2|verb|http://v"]}},
                                   {"ref_keys": {"$in": ["2|learner|h1", "2|learner|h2"]}}]}


def _matches(doc: dict, condition: dict) -> bool:
    """Enough of MongoDB's matching for the conditions filter_through builds."""
    if "$and" in condition:
        return all(_matches(doc, c) for c in condition["$and"])
    for name, want in condition.items():
        have = doc.get(name)
        have = have if isinstance(have, list) else [have]
        wanted = want["$in"] if isinstance(want, dict) else [want]
        if not set(have) & set(wanted):
            return False
    return True


def test_a_chain_of_references_meets_the_filter_of_its_end_and_nothing_is_mixed_up():
    a = {"_id": "a", "learner": "h1", "verb": "http://v/done", "activity": "http://a/1"}
    b = {"_id": "b", "learner": "h2", "verb": "http://v/voided", "ref": "a"}
    b["ref_keys"] = xapi.ref_keys(a)
    c = {"_id": "c", "learner": "h3", "verb": "http://v/liked", "ref": "b"}
    c["ref_keys"] = xapi.ref_keys(b)

    def found(conditions):
        return [d["_id"] for d in (a, b, c) if any(_matches(d, x) for x in xapi.filter_through(conditions))]

    assert found({"verb": ["http://v/done"]}) == ["a", "b", "c"]
    assert found({"verb": ["http://v/voided"]}) == ["b", "c"]
    assert found({"activity": ["http://a/1"], "learner": ["h1"]}) == ["a", "b", "c"]
    # b's verb with a's learner: no single statement in any chain has both.
    assert found({"verb": ["http://v/voided"], "learner": ["h1"]}) == []
    assert found({"verb": ["http://v/liked"]}) == ["c"]
