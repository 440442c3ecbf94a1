"""Site tokens: the secret a researcher at a site types to join a federation.

A token (``msft1_`` + 43 URL-safe characters = 256 random bits from the OS) is the seed of that site's
Flower node key: HKDF-SHA384 turns it into a P-384 private key (:func:`node_private_key`). The admin keeps
only the matching public key (:func:`public_key_openssh`), registered with Flower's SuperLink
(``flwr supernode register``); Flower then authenticates every request of the site's SuperNode by a
signature with that key (SuperLink ``--enable-supernode-auth``, which needs TLS). A site that types a
wrong or unknown token derives a key the SuperLink does not know, and Flower refuses it. No MedSyn code
checks tokens on the wire: the authentication is Flower's, the token only carries its key.

The token is a secret: hand it to the site over a separate channel (not the e-mail that carries the
server address); a leaked token is revoked by removing its site from the federation file (a new token
gives a new key).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path

from medsyn_core.files import atomic_write_bytes

TOKEN_PREFIX = "msft1_"
_TOKEN_RE = re.compile(r"^msft1_[A-Za-z0-9_-]{43}$")
#: Order of the P-384 group (FIPS 186-4, D.1.2.4): private scalars lie in [1, n - 1].
_P384_ORDER = int("ffffffffffffffffffffffffffffffffffffffffffffffff"
                  "c7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16)


class TokenError(ValueError):
    """A token that is not a MedSyn site token (the message never repeats the token)."""

    value_free_message = True


def new_token() -> str:
    """A fresh site token with 256 bits from the OS's secure generator."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_token(token: str) -> str:
    token = (token or "").strip()
    if not _TOKEN_RE.match(token):
        raise TokenError("This is not a MedSyn site token (it starts with 'msft1_' and has 49 characters). "
                         "Ask the federation's admin for your site's token.")
    return token


def node_private_key(token: str):
    """The site's P-384 private key, derived from the token with HKDF-SHA384 (deterministic)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    seed = HKDF(algorithm=hashes.SHA384(), length=64, salt=b"medsyn-federated-node-key",
                info=b"flower supernode p384 v1").derive(check_token(token).encode("ascii"))
    scalar = int.from_bytes(seed, "big") % (_P384_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP384R1())


def public_key_openssh(token: str) -> bytes:
    """The site's public key in OpenSSH format (what ``flwr supernode register`` takes)."""
    from cryptography.hazmat.primitives import serialization

    return node_private_key(token).public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                             serialization.PublicFormat.OpenSSH)


def key_id(public_key: bytes) -> str:
    """A short, non-secret name of a public key for logs and the page (SHA-256, 12 hex digits)."""
    return hashlib.sha256(public_key.strip()).hexdigest()[:12]


def write_private_key(token: str, path: str | Path) -> Path:
    """Write the site's private key in OpenSSH format (0600), as ``flower-supernode`` reads it."""
    from cryptography.hazmat.primitives import serialization

    key = node_private_key(token)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    return atomic_write_bytes(path, pem)
