"""Field rules: what is accepted, how it is normalised, and how violations are named."""

from __future__ import annotations

import pytest

from user_service.domain.errors import ValidationError
from user_service.domain.pagination import PageLimits, decode_page_token, encode_page_token
from user_service.domain.validation import EMAIL_MAX_LENGTH, NAME_MAX_LENGTH, FieldChecks


def _violations(checks: FieldChecks) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        checks.raise_if_invalid()
    return {v.field: v.description for v in caught.value.violations}


class TestName:
    @pytest.mark.parametrize(
        ("raw", "normalised"),
        [("Ada", "Ada"), ("  Ada Lovelace  ", "Ada Lovelace"), ("Zoe\u0301", "Zoé"), ("李小龍", "李小龍")],
    )
    def test_valid_names_are_trimmed_and_nfc_normalised(self, raw: str, normalised: str) -> None:
        checks = FieldChecks()
        assert checks.name(raw, "user.name") == normalised
        checks.raise_if_invalid()

    @pytest.mark.parametrize(
        "raw", ["", "   ", "x" * (NAME_MAX_LENGTH + 1), "tab\tinside", "zero\u200bwidth", "private\ue000"]
    )
    def test_invalid_names_are_named(self, raw: str) -> None:
        checks = FieldChecks()
        checks.name(raw, "user.name")
        assert set(_violations(checks)) == {"user.name"}

    def test_exactly_the_maximum_length_is_accepted(self) -> None:
        checks = FieldChecks()
        checks.name("x" * NAME_MAX_LENGTH, "user.name")
        checks.raise_if_invalid()


class TestEmail:
    @pytest.mark.parametrize(
        ("raw", "normalised"),
        [
            ("ada@example.com", "ada@example.com"),
            (" Ada.Lovelace+tag@Example.CO.uk ", "ada.lovelace+tag@example.co.uk"),
            ("o'brien@sub-domain.example.org", "o'brien@sub-domain.example.org"),
        ],
    )
    def test_valid_addresses_are_trimmed_and_lower_cased(self, raw: str, normalised: str) -> None:
        checks = FieldChecks()
        assert checks.email(raw, "user.email") == normalised
        checks.raise_if_invalid()

    @pytest.mark.parametrize(
        "raw",
        [
            "",
            "plain",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "ada@-example.com",
            ".ada@example.com",
            "ada.@example.com",
            "a da@example.com",
            "ada@example.c0m",
            "adä@example.com",
            "x" * 65 + "@example.com",
            "a@" + "b" * (EMAIL_MAX_LENGTH - 5) + ".com",
        ],
    )
    def test_invalid_addresses_are_named(self, raw: str) -> None:
        checks = FieldChecks()
        checks.email(raw, "user.email")
        assert set(_violations(checks)) == {"user.email"}


def test_all_violations_are_reported_at_once() -> None:
    checks = FieldChecks()
    checks.name("", "user.name")
    checks.email("nope", "user.email")
    checks.positive_id(0, "user.id")
    assert set(_violations(checks)) == {"user.name", "user.email", "user.id"}


@pytest.mark.parametrize(
    ("raw", "version"), [("", None), ("1", 1), ("123456789012345678", 123456789012345678)]
)
def test_etags_we_issue_parse_to_versions(raw: str, version: int | None) -> None:
    checks = FieldChecks()
    assert checks.etag(raw, "etag") == version
    checks.raise_if_invalid()


@pytest.mark.parametrize("raw", ["0", "-1", "1.0", "W/1", "\uff11", "1234567890123456789"])
def test_foreign_etags_are_invalid(raw: str) -> None:
    checks = FieldChecks()
    checks.etag(raw, "etag")
    assert set(_violations(checks)) == {"etag"}


class TestPaging:
    limits = PageLimits(default_size=50, max_size=1000)

    @pytest.mark.parametrize(("requested", "size"), [(0, 50), (1, 1), (1000, 1000), (2**31 - 1, 1000)])
    def test_page_size_defaults_and_clamps(self, requested: int, size: int) -> None:
        checks = FieldChecks()
        assert checks.page_size(requested, "page_size", self.limits) == size
        checks.raise_if_invalid()

    def test_negative_page_size_is_invalid(self) -> None:
        checks = FieldChecks()
        checks.page_size(-1, "page_size", self.limits)
        assert set(_violations(checks)) == {"page_size"}

    @pytest.mark.parametrize("after_id", [1, 42, 2**63 - 1])
    def test_tokens_round_trip(self, after_id: int) -> None:
        assert decode_page_token(encode_page_token(after_id)) == after_id

    def test_empty_token_is_the_first_page(self) -> None:
        assert decode_page_token("") == 0

    @pytest.mark.parametrize(
        "token", ["%%%", "YWJj", encode_page_token(1)[:-2] + "!!", "dXNlcnMvYWZ0ZXIvLTE"]
    )
    def test_forged_tokens_are_rejected(self, token: str) -> None:
        with pytest.raises(ValueError, match=r"."):
            decode_page_token(token)
