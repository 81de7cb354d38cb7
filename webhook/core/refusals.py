"""Why a shared contact was refused: the reply each reason gets, and its wording."""

from __future__ import annotations

from webhook.core.outbox import ReplyKind
from webhook.core.phones import ContactRefusal


def N_(text: str) -> str:
    """Mark a text for the catalogues (pybabel's N_ keyword); it is translated where it is used."""
    return text


REPLY_FOR_REFUSAL = {
    ContactRefusal.INVALID_NUMBER: ReplyKind.PHONE_INVALID,
    ContactRefusal.COUNTRY_NOT_ALLOWED: ReplyKind.PHONE_REFUSED,
    ContactRefusal.COUNTRY_MISMATCH: ReplyKind.PHONE_COUNTRY_MISMATCH,
    ContactRefusal.NOT_OWN_CONTACT: ReplyKind.PHONE_NOT_OWN,
    ContactRefusal.OTHER_NUMBER: ReplyKind.PHONE_OTHER_NUMBER,
    ContactRefusal.BOUND_ELSEWHERE: ReplyKind.PHONE_BOUND_ELSEWHERE,
    ContactRefusal.UNPROVEN_NUMBER: ReplyKind.PHONE_UNPROVEN,
}
"""The voter is always told why; never a silent refusal."""

REFUSAL_TEXTS = {
    ReplyKind.PHONE_INVALID: N_(
        "That is not a valid mobile phone number. Tap “Share my phone number” to share your own."
    ),
    ReplyKind.PHONE_COUNTRY_MISMATCH: N_(
        "This number is not the one your account is registered with, so it cannot vote here. "
        "Tap “Share my phone number” to share your own number."
    ),
    ReplyKind.PHONE_NOT_OWN: N_(
        "That contact is not your own number. Tap “Share my phone number” to share your own."
    ),
    ReplyKind.PHONE_OTHER_NUMBER: N_(
        "This account is already verified with another number. "
        "Each account can vote with one number only; the first one it shared counts."
    ),
    ReplyKind.PHONE_BOUND_ELSEWHERE: N_(
        "This number is already verified with another account. A number can vote only once."
    ),
    ReplyKind.PHONE_UNPROVEN: N_(
        "This vote takes only numbers your messenger can prove are yours, and this one cannot. "
        "Please vote through the vote's Telegram bot."
    ),
}
