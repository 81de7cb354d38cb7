"""Viber ids sealed (AES-GCM) while a reply waits, so Redis and its files never hold them in clear.

A vote or reply waiting in a stream needs its voter's Viber id to be answered. Stored as is, the
id would also reach Redis's append-only file next to the option chosen, and stay there until
Redis rewrites the file. Sealed, the file holds only ciphertext that the service's secret opens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from typing import NewType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from webhook.core.errors import UnreadableReceiver

SealedReceiver = NewType("SealedReceiver", str)
"""A Viber id as `seal` returns it: what the streams, retries and dead letters hold."""

SEAL_PREFIX = "s1."
"""Marks a sealed id; a Viber id is base64 and never contains a dot."""
NONCE_BYTES = 12
KEY_CONTEXT = b"viber-vote receiver seal v1"
"""The sealing key is HMAC-SHA256(VOTER_ID_SECRET, this): no second secret to configure."""


class ReceiverSeal:
    """Seals Viber ids for storage and opens them again at send time."""

    def __init__(self, secret: str) -> None:
        """Derive the sealing key from the voter-id secret."""
        key = hmac.new(secret.encode(), KEY_CONTEXT, hashlib.sha256).digest()
        self._aead = AESGCM(key)

    def seal(self, receiver: str) -> SealedReceiver:
        """The id encrypted under a fresh nonce, as ASCII text."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, receiver.encode(), None)
        return SealedReceiver(SEAL_PREFIX + base64.urlsafe_b64encode(sealed).decode())

    def open(self, stored: str) -> str:
        """The Viber id behind a sealed one; an id queued before sealing existed is returned as is."""
        if not stored.startswith(SEAL_PREFIX):
            return stored
        try:
            sealed = base64.urlsafe_b64decode(stored[len(SEAL_PREFIX) :])
            nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
            return self._aead.decrypt(nonce, ciphertext, None).decode()
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise UnreadableReceiver("sealed under another secret, or damaged") from exc
