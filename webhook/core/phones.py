"""Phone numbers a voter shares: parsed and validated with libphonenumber's data, then judged.

A contact message proves nothing by itself (a forwarded or hand-made card arrives like the
share-phone button's): a number is accepted only when it is a valid mobile number of a country
the poll is for, and when what the messenger vouches for agrees with it (Viber: the account's
country; Telegram: that the contact is the sender's own).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

MAX_RAW_CHARS = 64
"""Longer 'numbers' are refused before parsing."""
MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
"""Accepted number types: mobile, or a range where fixed and mobile cannot be told apart (+1)."""


class ContactRefusal(StrEnum):
    """Why a shared contact was not accepted (also the metrics label)."""

    INVALID_NUMBER = "invalid_number"
    COUNTRY_NOT_ALLOWED = "country_not_allowed"
    COUNTRY_MISMATCH = "country_mismatch"
    NOT_OWN_CONTACT = "not_own_contact"
    OTHER_NUMBER = "other_number"
    BOUND_ELSEWHERE = "bound_elsewhere"
    UNPROVEN_NUMBER = "unproven_number"
    """The poll takes only numbers the messenger proves are the sender's own (not Viber's)."""


@dataclass(frozen=True)
class PhoneNumber:
    """A valid number: E.164 ("+375291234567") and the region libphonenumber places it in."""

    e164: str
    region: str


@dataclass(frozen=True)
class SharedContact:
    """A contact message as a channel saw it, with what the channel vouches for.

    account_country: the two-letter country the messenger says the account is registered in
    (Viber's sender.country; "" when that channel should say but did not; None when the channel
    has no such fact). own_contact: whether the messenger says the contact is the sender's own
    (Telegram's contact.user_id == from.id; None when the channel cannot tell).
    """

    raw_number: str
    account_country: str | None = None
    own_contact: bool | None = None


def parse_phone(raw: str) -> PhoneNumber | None:
    """A valid mobile number from what a contact carried ("+375 29 ...", "375...", "00375..."), or None."""
    text = raw.strip()
    if not text or len(text) > MAX_RAW_CHARS:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    elif not text.startswith("+"):
        text = "+" + text  # Telegram and Viber may send the number without its '+'
    try:
        number = phonenumbers.parse(text, None)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) or phonenumbers.number_type(number) not in MOBILE_TYPES:
        return None
    region = phonenumbers.region_code_for_number(number)
    if not region:
        return None
    return PhoneNumber(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), region)


def regions_of_country_codes(codes: tuple[str, ...]) -> tuple[str, ...]:
    """The two-letter regions behind calling codes ("375" -> "BY"; "7" -> "RU", "KZ")."""
    regions: list[str] = []
    for code in codes:
        regions.extend(r for r in phonenumbers.region_codes_for_country_code(int(code)) if r not in regions)
    return tuple(regions)


def judge_contact(contact: SharedContact, allowed_regions: tuple[str, ...]) -> PhoneNumber | ContactRefusal:
    """The number a contact may bind, or why it may not (before any account or number is looked up)."""
    if contact.own_contact is False:
        return ContactRefusal.NOT_OWN_CONTACT
    number = parse_phone(contact.raw_number)
    if number is None:
        return ContactRefusal.INVALID_NUMBER
    if allowed_regions and number.region not in allowed_regions:
        return ContactRefusal.COUNTRY_NOT_ALLOWED
    if contact.account_country is not None and contact.account_country.upper() != number.region:
        # The share-phone button sends the account's own number, and the account's country
        # follows that number: a card whose country differs is someone else's number.
        return ContactRefusal.COUNTRY_MISMATCH
    return number
