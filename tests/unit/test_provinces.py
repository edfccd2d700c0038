from collections import Counter

from services.contracts.provinces import (
    PROVINCE_CODES,
    REGIONS,
    get_provinces,
    is_province,
    provinces_in_region,
)


def test_exactly_77_unique_provinces():
    provinces = get_provinces()
    assert len(provinces) == 77
    assert len(PROVINCE_CODES) == 77
    assert set(provinces) == PROVINCE_CODES
    assert len({p.name_th for p in provinces.values()}) == 77
    assert len({p.name_en for p in provinces.values()}) == 77


def test_keys_match_codes_and_regions_valid():
    for code, p in get_provinces().items():
        assert code == p.code
        assert p.region in REGIONS


def test_known_provinces():
    provinces = get_provinces()
    assert provinces["TH-10"].name_th == "กรุงเทพมหานคร"
    assert provinces["TH-10"].name_en == "Bangkok"
    assert provinces["TH-50"].name_en == "Chiang Mai"
    assert provinces["TH-50"].region == "north"
    assert provinces["TH-38"].name_th == "บึงกาฬ"  # newest province (2011)
    assert provinces["TH-83"].region == "south"


def test_six_region_counts():
    counts = Counter(p.region for p in get_provinces().values())
    assert counts == {"central": 22, "northeast": 20, "south": 14, "north": 9, "east": 7, "west": 5}
    assert len(provinces_in_region("east")) == 7


def test_is_province():
    assert is_province("TH-10")
    assert is_province("TH-96")
    assert not is_province("TH-S")  # Pattaya special city
    assert not is_province("th-10")
    assert not is_province("TH-28")
    assert not is_province(None)


def test_get_provinces_returns_copy():
    get_provinces().clear()
    assert len(get_provinces()) == 77
