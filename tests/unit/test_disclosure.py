"""Small-cell suppression for agency readers: primary, complementary and national (own part known)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.feedback import disclosure
from services.feedback.domain import Cell, overall

AGES = ("under_18", "18_24", "25_34", "35_44", "45_59", "60_plus")
CHANNELS = ("online_web", "mobile_app", "walk_in")


def cell(age, channel, n, sat=None):
    sat = n if sat is None else sat  # everyone answered 5 unless told
    return Cell(age, channel, n, sat, 5 * sat + (n - sat), 0, n, (n - sat, 0, 0, 0, sat))


def test_a_small_cell_is_suppressed_with_its_figures_and_a_complement_hides_it_in_the_overall():
    cells = [cell("25_34", "walk_in", 1), cell("25_34", "online_web", 40), cell("35_44", "online_web", 12),
             cell("60_plus", "walk_in", 25)]
    plan = disclosure.plan(cells, 10)
    # The lone answer, plus the next smallest cell: overall minus published cells is 13 people, not 1.
    assert plan.cells == {("25_34", "walk_in"), ("35_44", "online_web")} and not plan.overall
    shown = [disclosure.cell_dict(c, plan) for c in cells]
    lone = shown[0]
    assert lone["suppressed"] is True and lone["responses"] is None and lone["mean_satisfaction"] is None
    assert lone["satisfaction_levels"] is None and lone["share_satisfied"] is None
    assert shown[1]["suppressed"] is False and shown[1]["responses"] == 40
    total = disclosure.overall_dict(overall(cells), plan)
    assert total["responses"] == 78 and total["suppressed"] is False


def test_everything_is_suppressed_when_all_responses_together_are_too_few():
    cells = [cell("25_34", "walk_in", 4), cell("18_24", "online_web", 5)]
    plan = disclosure.plan(cells, 10)
    assert plan.overall and plan.cells == {("25_34", "walk_in"), ("18_24", "online_web")}
    assert disclosure.overall_dict(overall(cells), plan)["responses"] is None


def test_no_small_cells_nothing_suppressed_and_the_programme_office_sees_all():
    cells = [cell("25_34", "walk_in", 10), cell("18_24", "online_web", 50)]
    assert disclosure.plan(cells, 10).cells == frozenset()
    assert disclosure.cell_dict(cell("25_34", "walk_in", 1), disclosure.NONE)["responses"] == 1
    assert disclosure.NONE.as_dict()["applied"] is False


def test_national_figures_hide_what_other_agencies_add_in_small_numbers():
    national = [cell("25_34", "walk_in", 30), cell("18_24", "online_web", 50), cell("60_plus", "walk_in", 40)]
    # The reader's agency gave 29 of the 30 walk-in answers: the one other citizen would show by subtraction.
    own = {("25_34", "walk_in"): 29, ("18_24", "online_web"): 20}
    plan = disclosure.plan(national, 10, own)
    assert ("25_34", "walk_in") in plan.cells
    assert len(plan.cells) == 2 and not plan.overall  # plus a complement, so the overall does not give it away


def test_gap_rows_of_hidden_cells_keep_only_their_name():
    big = cell("60_plus", "walk_in", 40, sat=5)
    plan = disclosure.Suppression(10, frozenset({("60_plus", "walk_in")}), False)
    row = {"age_group": "60_plus", "cohort": "older", "channel": "walk_in", "responses": 40, "share_satisfied": 0.125,
           "z": -4.0, "p_value": 0.0001}
    hidden = disclosure.gap_dict(row, big, plan)
    assert hidden["suppressed"] and hidden["responses"] is None and hidden["z"] is None and hidden["channel"] == "walk_in"
    assert disclosure.gap_dict(row, big, disclosure.plan([big], 10))["z"] == -4.0


sizes = st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=len(AGES) * len(CHANNELS))


@settings(max_examples=300, deadline=None)
@given(sizes, sizes, st.integers(min_value=2, max_value=20))
def test_what_an_agency_can_subtract_is_never_a_group_smaller_than_the_threshold(national_n, own_n, k):
    keys = [(a, c) for a in AGES for c in CHANNELS]
    cells = [cell(*keys[i], n) for i, n in enumerate(national_n) if n > 0]
    known = {keys[i]: min(n, national_n[i]) for i, n in enumerate(own_n) if i < len(national_n)}
    plan = disclosure.plan(cells, k, known)

    def exposed(c):
        return c.responses - known.get(disclosure.key_of(c), 0)

    for c in cells:
        if not plan.hides(c):  # a published cell: big enough, and what others add is none or big enough
            assert c.responses >= k and (exposed(c) == 0 or exposed(c) >= k)
    if not plan.overall:
        residual = sum(exposed(c) for c in cells if plan.hides(c))  # overall minus published cells minus own part
        assert residual == 0 or residual >= k
        total = sum(c.responses for c in cells)
        assert total == 0 or total >= k
