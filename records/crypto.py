"""Protection of sensitive personal data (PIPL): ID numbers and mobiles.

Values are stored encrypted (AES-256-GCM, unique nonces) and matched by a keyed hash (BLAKE2b
keyed by prefix, see `FieldCipher.keyed_hash`), so that equality joins work without ever storing
the plaintext. Both keys are derived from the one secret (`DUALLINE_SECRET_KEY` or the config's
`secret_key`) with HKDF, each for its own purpose.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"dualline", info=purpose).derive(
        secret.encode("utf-8")
    )


class FieldCipher:
    """Encrypts, decrypts and hashes sensitive field values with keys derived from one secret."""

    def __init__(self, secret: str) -> None:
        if not secret or len(secret) < 16:
            raise ValueError("the secret key must be at least 16 characters")
        self._aead = AESGCM(_derive(secret, b"field-encryption"))
        self._hash_key = _derive(secret, b"field-matching-hash")
        # Nonces: a random 4-byte prefix per cipher object and a 64-bit counter (NIST SP 800-38D
        # deterministic construction): unique without a system call per value.
        self._nonce_prefix = os.urandom(4)
        self._counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def encrypt(self, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        nonce = self._nonce_prefix + next(self._counter).to_bytes(8, "big")
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), None)
        return base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, token: str | None) -> str | None:
        if not token:
            return None
        raw = base64.b64decode(token)
        return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None).decode("utf-8")

    def keyed_hash(self, value: str | None) -> str | None:
        """Stable keyed hash for matching; normalizes case so 'x' and 'X' check digits match.

        BLAKE2b keyed by prefix (it has no length-extension weakness, so this is a sound MAC);
        it runs for every ID number and mobile a sync sees, where HMAC-SHA256 cost twice as much."""
        if value is None or value == "":
            return None
        return hashlib.blake2b(self._hash_key + value.strip().upper().encode("utf-8"), digest_size=20).hexdigest()


def mask_id_number(value: str | None) -> str | None:
    """110105********002X: area code and last four kept, birth date and sequence hidden."""
    if not value:
        return value
    if len(value) <= 8:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_mobile(value: str | None) -> str | None:
    """138****5678."""
    if not value:
        return value
    if len(value) <= 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def generate_secret() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii").rstrip("=")
