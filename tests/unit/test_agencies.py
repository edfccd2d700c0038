import re

import pytest

from services.contracts.agencies import (
    PROGRAMME_OFFICE,
    Agency,
    AgencyDataError,
    AgencyRegistry,
    get_registry,
)

THAI = re.compile(r"[\u0E00-\u0E7F]")


def test_registry_is_cached():
    assert get_registry() is get_registry()


def test_twenty_ministry_level_entries_including_opm():
    reg = get_registry()
    codes = {m.code for m in reg.ministries()}
    # 19 ministries + the Office of the Prime Minister (ministry status).
    assert len(codes) == 20
    assert {"opm", "moi", "mof", "mdes", "moph", "mol", "mfa"} <= codes
    for m in reg.ministries():
        assert m.kind == "ministry" and m.ministry == m.code


def test_at_least_sixty_departments_and_all_reference_ministries():
    reg = get_registry()
    departments = [a for a in reg.all() if a.kind == "department"]
    assert len(departments) >= 60
    ministry_codes = {m.code for m in reg.ministries()}
    for dep in departments:
        assert dep.ministry in ministry_codes


def test_codes_unique_and_well_formed():
    reg = get_registry()
    all_agencies = reg.all()
    assert len(all_agencies) == len(reg.codes())
    for a in all_agencies:
        assert re.fullmatch(r"[a-z][a-z0-9_]{1,31}", a.code)
        assert THAI.search(a.name_th) and not THAI.search(a.name_en)


def test_all_sorted_by_code():
    codes = [a.code for a in get_registry().all()]
    assert codes == sorted(codes)


@pytest.mark.parametrize(
    ("code", "name_th", "ministry"),
    [
        ("opdc", "สำนักงานคณะกรรมการพัฒนาระบบราชการ", "opm"),
        ("ocsc", "สำนักงานคณะกรรมการข้าราชการพลเรือน", "opm"),
        ("dopa", "กรมการปกครอง", "moi"),
        ("rd", "กรมสรรพากร", "mof"),
        ("dlt", "กรมการขนส่งทางบก", "mot"),
        ("anamai", "กรมอนามัย", "moph"),
        ("dca", "กรมการกงสุล", "mfa"),
        ("sso", "สำนักงานประกันสังคม", "mol"),
        ("doe", "กรมการจัดหางาน", "mol"),
        ("moi", "กระทรวงมหาดไทย", "moi"),
    ],
)
def test_known_agencies(code, name_th, ministry):
    agency = get_registry().get(code)
    assert agency is not None
    assert agency.name_th == name_th
    assert agency.ministry == ministry


def test_programme_office_is_opdc():
    reg = get_registry()
    assert PROGRAMME_OFFICE == "opdc"
    assert PROGRAMME_OFFICE in reg
    assert reg.get(PROGRAMME_OFFICE).name_en == "Office of the Public Sector Development Commission"


def test_contains_get_and_label():
    reg = get_registry()
    assert "dga" in reg
    assert "nope" not in reg
    assert 42 not in reg
    assert reg.get("nope") is None
    assert reg.label("rd") == "กรมสรรพากร (Revenue Department)"
    with pytest.raises(KeyError):
        reg.label("nope")


def test_departments_of():
    reg = get_registry()
    moi = reg.departments_of("moi")
    assert {"dopa", "dol", "dla"} <= {a.code for a in moi}
    assert all(a.kind == "department" and a.ministry == "moi" for a in moi)
    assert [a.code for a in moi] == sorted(a.code for a in moi)
    with pytest.raises(KeyError):
        reg.departments_of("dopa")  # a department, not a ministry
    with pytest.raises(KeyError):
        reg.departments_of("unknown")


def test_every_department_listed_under_exactly_one_ministry():
    reg = get_registry()
    listed = [d.code for m in reg.ministries() for d in reg.departments_of(m.code)]
    assert len(listed) == len(set(listed))
    assert set(listed) == {a.code for a in reg.all() if a.kind == "department"}


def test_returned_lists_are_copies():
    reg = get_registry()
    reg.all().clear()
    reg.ministries().clear()
    assert reg.all() and reg.ministries()


def _rec(code, ministry, kind="department", th="กรมทดสอบ", en="Test Department"):
    return {"code": code, "name_th": th, "name_en": en, "ministry": ministry, "kind": kind}


def test_validation_rejects_duplicate_codes():
    with pytest.raises(AgencyDataError, match="duplicate"):
        AgencyRegistry.from_records(
            [_rec("moi", "moi", "ministry", "กระทรวงมหาดไทย"), _rec("moi", "moi", "ministry", "กระทรวงมหาดไทย")]
        )


def test_validation_rejects_dangling_ministry():
    with pytest.raises(AgencyDataError, match="unknown ministry"):
        AgencyRegistry.from_records([_rec("dopa", "moi")])


def test_validation_rejects_department_as_parent():
    with pytest.raises(AgencyDataError, match="not a ministry"):
        AgencyRegistry.from_records([_rec("moi", "moi", "ministry", "กระทรวงมหาดไทย"), _rec("dopa", "moi"), _rec("sub", "dopa")])


@pytest.mark.parametrize("code", ["MOI", "1abc", "a", "with-dash", "x" * 33])
def test_validation_rejects_bad_code(code):
    with pytest.raises(AgencyDataError):
        AgencyRegistry.from_records([_rec(code, code, "ministry", "กระทรวงทดสอบ")])


def test_validation_rejects_bad_kind_and_fields():
    with pytest.raises(AgencyDataError, match="kind"):
        AgencyRegistry.from_records([_rec("abc", "abc", "agency")])
    with pytest.raises(AgencyDataError, match="missing"):
        AgencyRegistry.from_records([{"code": "abc"}])
    with pytest.raises(AgencyDataError, match="must reference itself"):
        AgencyRegistry.from_records([_rec("moi", "moi", "ministry"), _rec("mof", "moi", "ministry")])


def test_agency_is_frozen():
    a = Agency("abc", "กรม", "Dept", "abc", "ministry")
    with pytest.raises(AttributeError):
        a.code = "x"  # type: ignore[misc]
