import pytest
from support import BAD_NAMES, ODD_BUT_ACCEPTED

from agegender.data.labels import InvalidName, Labels, age_band, is_documented_name, parse_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1_0_0_20161219203650636.jpg.chip.jpg", Labels(1, 0, 0)),
        ("116_1_4_20170120134921760.jpg.chip.jpg", Labels(116, 1, 4)),
        ("0_1_2_20170110213111888.jpg", Labels(0, 1, 2)),
        ("30_1_3.png", Labels(30, 1, 3)),  # no timestamp
        ("30_1.jpg", Labels(30, 1, None)),  # age and gender only
        ("28_1_2_201701161846515488.jpg.chip.jpg", Labels(28, 1, 2)),  # 18-digit timestamp
        ("28_1_2_2017_extra_fields.jpg.chip.jpg", Labels(28, 1, 2)),
        ("45_0_1_20170116.JPG", Labels(45, 0, 1)),
        *[(name, Labels(*labels)) for name, labels in ODD_BUT_ACCEPTED.items()],
    ],
)
def test_parse_name_accepts_readable_names(name, expected):
    assert parse_name(name) == expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        *BAD_NAMES.items(),
        ("-3_0_0_20170116174525125.jpg.chip.jpg", "age is not a number"),
        ("3.5_0_0_20170116174525125.jpg.chip.jpg", "a name field holds a dot"),
        ("_0_0_20170116174525125.jpg.chip.jpg", "age is not a number"),
        ("30__0_20170116174525125.jpg.chip.jpg", "gender is not 0 or 1"),
        ("30_01_0_20170116174525125.jpg.chip.jpg", "gender is not 0 or 1"),
        ("30_1_12_20170116174525125.jpg.chip.jpg", "race is not 0-4"),
        ("30_1_x_20170116174525125.jpg.chip.jpg", "race is not 0-4"),
        ("30_1_20170116174525125_extra.jpg.chip.jpg", "race is not 0-4"),  # shifted fields
        ("30_1_0_20170116174525125.jpg.chip.jpg.txt", "not an image file name"),
        ("", "not an image file name"),
    ],
)
def test_parse_name_rejects_with_reason(name, reason):
    with pytest.raises(InvalidName) as raised:
        parse_name(name)
    assert raised.value.reason == reason


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (0, "0-12"),
        (12, "0-12"),
        (13, "13-19"),
        (19, "13-19"),
        (20, "20-39"),
        (39, "20-39"),
        (40, "40-59"),
        (59, "40-59"),
        (60, "60+"),
        (116, "60+"),
    ],
)
def test_age_band_edges(age, band):
    assert age_band(age) == band


def test_age_band_refuses_impossible_ages():
    with pytest.raises(ValueError, match="Received: age=117"):
        age_band(117)


def test_documented_names_are_told_from_odd_ones():
    assert is_documented_name("1_0_0_20161219203650636.jpg.chip.jpg")
    for name in ODD_BUT_ACCEPTED:
        assert not is_documented_name(name)
