"""Phone number normalisation, withheld caller IDs and the E.164 validator."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from callbroker.core import phone

# Area codes in service in several states and Canada (all geographic).
NANP_AREA_CODES = ["212", "312", "415", "512", "617", "713", "737", "808", "907", "305", "416", "604", "787"]
REGIONS = ["US", "CA", "GB", "DE", "FR", "AU", "MX", "IN", "JP", "BR", "ES", "IT", "NL", "ZA"]
FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]


@st.composite
def nanp_numbers(draw: st.DrawFn) -> str:
    npa = draw(st.sampled_from(NANP_AREA_CODES))
    exchange = draw(st.integers(200, 999))
    line = draw(st.integers(0, 9999))
    number = phonenumbers.parse(f"+1{npa}{exchange}{line:04d}")
    assume(phonenumbers.is_valid_number(number))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@st.composite
def world_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(region, E.164) for a valid number: a region's example number with its last digits changed."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(
        st.sampled_from([phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE])
    )
    example = phonenumbers.example_number_for_type(region, kind)
    assume(example is not None)
    national = str(example.national_number)
    tail = draw(st.integers(0, 999))
    national = national[:-3] + f"{tail:03d}"
    number = phonenumbers.parse(f"+{example.country_code}{national}")
    assume(phonenumbers.is_valid_number(number))
    return region, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class TestNormalize:
    @pytest.mark.parametrize(
        "raw",
        [
            "(512) 555-0100",
            "512-555-0100",
            "512.555.0100",
            "+1 512 555 0100",
            "1-512-555-0100",
            " 5125550100 ",
        ],
    )
    def test_usual_us_spellings(self, raw: str) -> None:
        assert phone.normalize(raw) == "+15125550100"

    def test_region_is_used_for_national_numbers(self) -> None:
        assert phone.normalize("020 7946 0000", region="GB") == "+442079460000"
        assert phone.normalize("+44 20 7946 0000") == "+442079460000"

    @pytest.mark.parametrize(
        "raw", [None, "", "   ", "abc", "12345", "+1 555 555 0100", "+1 211 555 0100", "+999"]
    )
    def test_invalid_gives_none(self, raw: str | None) -> None:
        assert phone.normalize(raw) is None

    @settings(max_examples=150, deadline=None)
    @given(e164=nanp_numbers(), fmt=st.sampled_from(FORMATS))
    def test_nanp_round_trip(self, e164: str, fmt: phonenumbers.PhoneNumberFormat) -> None:
        written = phonenumbers.format_number(phonenumbers.parse(e164), fmt)
        assert phone.normalize(written) == e164
        assert phone.normalize(e164) == e164  # idempotent
        assert phone.validate_e164(e164) == e164
        assert phone.classify_caller(written) == (e164, "valid")
        assert phone.area_code(e164) == e164[2:5]

    @settings(max_examples=150, deadline=None)
    @given(case=world_numbers(), fmt=st.sampled_from(FORMATS))
    def test_world_round_trip(self, case: tuple[str, str], fmt: phonenumbers.PhoneNumberFormat) -> None:
        region, e164 = case
        written = phonenumbers.format_number(phonenumbers.parse(e164), fmt)
        # A national spelling needs its own region; international spellings parse from anywhere.
        assert phone.normalize(written, region=region) == e164
        assert phone.normalize(e164, region="US") == e164
        assert phone.validate_e164(e164) == e164


class TestAnonymous:
    @pytest.mark.parametrize(
        "raw",
        [
            None, "", "  ", "anonymous", "Anonymous", "ANONYMOUS", "restricted", "unknown", "private",
            "unavailable", "blocked", "withheld",
            "+266696687", "266696687", "+7378742833", "7378742833", "+86282452253", "86282452253",
            "+2562533", "2562533", "+8656696", "8656696",
            "sip:anonymous@anonymous.invalid",
        ],
    )  # fmt: skip
    def test_withheld_caller_ids(self, raw: str | None) -> None:
        assert phone.is_anonymous(raw)
        assert phone.classify_caller(raw) == (None, "anonymous")

    def test_keypad_spellings_match_the_words(self) -> None:
        assert {"266696687", "7378742833", "86282452253", "2562533", "8656696"} <= phone.WITHHELD_DIGITS

    @settings(max_examples=50, deadline=None)
    @given(e164=nanp_numbers())
    def test_real_numbers_are_not_anonymous(self, e164: str) -> None:
        assert not phone.is_anonymous(e164)

    @pytest.mark.parametrize("raw", ["12345", "hello", "+1 555 555 0100", "+0 123"])
    def test_invalid_callers(self, raw: str) -> None:
        assert phone.classify_caller(raw) == (None, "invalid")


class TestAreaCode:
    def test_nanp(self) -> None:
        assert phone.area_code("+15125550100") == "512"
        assert phone.area_code("+14165550100") == "416"

    @pytest.mark.parametrize(
        "value", [None, "", "+442079460000", "5125550100", "+1512555010", "+11235550100"]
    )
    def test_not_nanp(self, value: str | None) -> None:
        assert phone.area_code(value) is None


class TestValidateE164:
    def test_message_for_a_national_number(self) -> None:
        with pytest.raises(ValueError) as info:
            phone.validate_e164("5125550100")
        assert str(info.value) == (
            "'5125550100' is not an E.164 phone number (expected +<country><number>, e.g. +15125550100)"
        )

    @pytest.mark.parametrize(
        "value", ["+1 512 555 0100", "+1-512-555-0100", "15125550100", "", "+", "+05125550100"]  # no country 0
    )
    def test_formatted_numbers_are_refused(self, value: str) -> None:
        with pytest.raises(ValueError, match=r"is not an E\.164 phone number"):
            phone.validate_e164(value)

    @pytest.mark.parametrize("value", ["+15555550100", "+12115550100", "+1512555010"])
    def test_e164_shaped_but_invalid(self, value: str) -> None:
        with pytest.raises(ValueError, match="not a valid phone number"):
            phone.validate_e164(value)

    def test_fictional_555_01xx_numbers_pass(self) -> None:
        for value in ("+15125550100", "+15125550101", "+13125550199", "+12125550150"):
            assert phone.validate_e164(value) == value

    def test_fictional_rule_survives_stricter_metadata(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # If a future phonenumbers release marks the 555 exchange invalid, the explicit rule still accepts
        # 555-01xx for geographic area codes in use, and nothing else.
        real_is_valid = phonenumbers.is_valid_number

        def stricter(number: phonenumbers.PhoneNumber) -> bool:
            national = str(number.national_number)
            return real_is_valid(number) and not (number.country_code == 1 and national[3:6] == "555")

        monkeypatch.setattr(phonenumbers, "is_valid_number", stricter)
        phone._area_code_in_use.cache_clear()
        assert not phonenumbers.is_valid_number(phonenumbers.parse("+15125550101"))
        assert phone.validate_e164("+15125550101") == "+15125550101"
        assert phone.normalize("(512) 555-0142") == "+15125550142"
        # ... and only 555-0100 to 555-0199, the range reserved for fiction
        for value in ("+15555550100", "+12115550100", "+19995550100", "+15125550200", "+15125550099"):
            with pytest.raises(ValueError):
                phone.validate_e164(value)


@settings(max_examples=400)
@example("+10123456789").via("an area code starting with 0: parse keeps a leading zero")
@example("+11234567890").via("an area code starting with 1")
@given(st.from_regex(r"\+1[2-9][0-9]{9}", fullmatch=True) | st.from_regex(r"\+1[0-9]{8,11}", fullmatch=True))
def test_the_nanp_shortcut_parses_as_phonenumbers_does(raw):
    """``+1NPANXXXXXX`` skips ``phonenumbers.parse``: the number (hence validity and E.164 form) is the same."""
    try:
        slow = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        slow = None
    assert phone._parse(raw, "US") == slow
    expected = phonenumbers.format_number(slow, phonenumbers.PhoneNumberFormat.E164) \
        if slow is not None and phone._acceptable(slow) else None
    assert phone.normalize(raw) == expected


@pytest.mark.parametrize("written", ["+1512\uff15\uff15\uff150100",  # full-width 5s
                                     "+1\u0665\u0661\u0662\u0665\u0665\u0665\u0660\u0661\u0660\u0660"])  # Arabic-Indic
def test_digits_of_another_script_are_not_an_e164_number(written):
    """Python's \\d takes them and phonenumbers reads them, but the number would be stored as written and
    never equal the carrier's ASCII ``To`` (a tracking number that never matches, a block that never blocks)."""
    with pytest.raises(ValueError):
        phone.validate_e164(written)
