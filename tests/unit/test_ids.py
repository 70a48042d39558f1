"""app.policy.ids: the one global-ID codec. Pure: no database."""

import base64

import pytest

from app.policy.ids import MAX_DIGITS, MAX_LENGTH, decode, decode_any, encode


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("type_name", "id_", "expected"),
    [
        ("Invoice", 1, "SW52b2ljZTox"),
        ("Webhook", 1, "V2ViaG9vazox"),
        ("cursor", 0, b64("cursor:0")),
        ("RefundRequest", 10**MAX_DIGITS - 1, b64(f"RefundRequest:{10**MAX_DIGITS - 1}")),
    ],
)
def test_encode_is_base64_of_type_colon_id_and_decodes_back(type_name: str, id_: int, expected: str) -> None:
    assert encode(type_name, id_) == expected
    assert decode(expected, type_name) == id_
    assert decode_any(expected) == (type_name, id_)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("not base64!", "not base64"),
        ("SW52b2ljZTox\x00", "NUL"),
        ("SW52b2ljZTox\ud800", "lone surrogate"),
        ("ＳＷ５２", "fullwidth (non-ASCII) characters"),
        ("SW52b2ljZTo", "bad padding"),
        (" SW52b2ljZTox", "whitespace"),
        (b64("Invoice"), "no colon"),
        (b64("Invoice:"), "no digits"),
        (b64("Invoice:-1"), "a sign"),
        (b64("Invoice:+1"), "a plus sign"),
        (b64("Invoice: 1"), "a space"),
        (b64("Invoice:1²"), "a superscript digit (isdigit() is True, int() refuses it)"),
        (b64("Invoice:١٢"), "Arabic-Indic digits (int() would accept them)"),
        (b64("Invoice:1.0"), "a decimal"),
        (b64("Invoice:0x1"), "hex"),
        (b64("Invoice:1_000"), "an underscore (int() would accept it)"),
        (b64("Invoice:" + "9" * (MAX_DIGITS + 1)), "past bigint"),
        (base64.b64encode(b"Invoice:\xff").decode(), "not UTF-8"),
        (b64("I" * MAX_LENGTH + ":1"), "too long (a well-formed ID otherwise)"),
    ],
)
def test_anything_else_decodes_to_none_never_raises(value: str, why: str) -> None:
    assert decode_any(value) is None, why
    assert decode(value, "Invoice") is None, why


@pytest.mark.parametrize("value", [None, 1, b"SW52b2ljZTox", ["SW52b2ljZTox"]])
def test_a_value_that_is_not_a_string_decodes_to_none(value: object) -> None:
    assert decode_any(value) is None


def test_decode_answers_only_for_the_named_type() -> None:
    invoice = encode("Invoice", 7)
    assert decode(invoice, "Invoice") == 7
    assert decode(invoice, "Webhook") is None
    assert decode(invoice, "invoice") is None  # type names are case-sensitive
