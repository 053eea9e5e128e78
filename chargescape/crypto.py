"""Encryption at rest for secrets we must be able to read back (OAuth tokens, provider keys).

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) with rotatable keys: the first key of
CHARGESCAPE_FIELD_KEYS encrypts, every listed key decrypts, and `manage.py rotate_field_keys`
re-encrypts stored values under the first key. `make run` / `make test` provide a development key
kept in .local/ (chargescape.embedded); production must set its own (a deploy check fails
without, chargescape.checks).
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

__all__ = ["EncryptedTextField", "InvalidToken", "decrypt", "encrypt", "fernet", "rotate"]


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("Set CHARGESCAPE_FIELD_KEYS (Fernet keys) to store secrets.")
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return fernet().decrypt(ciphertext.encode()).decode()


def rotate(ciphertext: str) -> str:
    """The same secret re-encrypted under the current first key."""
    return fernet().rotate(ciphertext.encode()).decode()


class EncryptedTextField(models.TextField):
    """A text column holding only ciphertext; Python sees plaintext.

    Empty strings are stored as-is (nothing secret to hide), so "no token" stays queryable.
    """

    def from_db_value(self, value, expression, connection):  # type: ignore[no-untyped-def]
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value):  # type: ignore[no-untyped-def]
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)
