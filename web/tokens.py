"""Credentials: access tokens (JWT HS256), refresh tokens and password hashes.

- :func:`issue_access_token` / :func:`verify_access_token`: a JWT signed with
  SHOP_JWT_SECRET, claims ``sub`` (user id), ``roles``, ``iat``, ``exp``, ``jti``. Only HS256
  is accepted (``alg: none`` and every other algorithm are refused).
- :func:`new_refresh_token` / :func:`parse_refresh_token`: an opaque
  ``<user id>.<token id>.<secret>``; the server keeps only the SHA-256 of the secret.
- :func:`hash_password` / :func:`verify_password`: argon2id in a thread, never on the loop
  (``models/users.py``), at the cost the settings name.

The functions take the secret, lifetimes and time as arguments (defaults from the app's
settings), so tests drive them without a clock or an app.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import NamedTuple

import jwt

from config import Settings
from models import users
from web.errors import ApiError

__all__ = [
    "ALGORITHM",
    "InvalidToken",
    "RefreshToken",
    "hash_password",
    "hash_secret",
    "issue_access_token",
    "new_refresh_token",
    "parse_refresh_token",
    "same_secret",
    "verify_access_token",
    "verify_password",
]

ALGORITHM = "HS256"
_REFRESH = re.compile(r"([0-9a-f]{32})\.([0-9a-f]{32})\.([A-Za-z0-9_-]{43})")


class InvalidToken(ApiError):
    """The token is missing, expired, tampered with or not ours; sign in again."""

    status = 401
    code = "unauthorized"


@cache
def _settings() -> Settings:
    """Return the app's settings, the defaults of the functions below."""
    # Imported when first needed, not with this module: the benchmarks, the recommendation
    # evaluation and the tests sign tokens with secrets of their own, without building the
    # worker's Faust app.
    from app import app

    return app.settings


def issue_access_token(user_id: str, roles: Iterable[str], *, secret: str | None = None,
                       ttl: float | None = None, now: datetime | None = None) -> str:
    """Return a signed access token for ``user_id`` with ``roles``."""
    key = secret if secret is not None else _settings().jwt_secret
    lifetime = ttl if ttl is not None else _settings().access_token_ttl
    issued = now or datetime.now(UTC)
    claims = {"sub": user_id, "roles": sorted(set(roles)), "iat": issued,
              "exp": issued + timedelta(seconds=lifetime), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify_access_token(token: str, *, secret: str | None = None, leeway: float = 0,
                        revoked_before: Callable[[str], str | None] | None = None,
                        ) -> tuple[str, frozenset[str]]:
    """Return (user id, roles) of a valid access token; raise :class:`InvalidToken`.

    ``revoked_before(user_id)`` names an ISO time: tokens of that user issued at or before it
    are refused (a deactivated user's tokens stop working at once). A token whose signature
    and claims were verified once is remembered by its exact text (and the secret), so a
    caller's next requests skip the signature; expiry and revocation are checked every time.
    """
    key = secret if secret is not None else _settings().jwt_secret
    verified = _VERIFIED.get((key, token))
    if verified is None:
        verified = _decode(token, key, leeway)
        if len(_VERIFIED) >= VERIFIED_CACHE_SIZE:
            del _VERIFIED[next(iter(_VERIFIED))]  # the oldest
        _VERIFIED[(key, token)] = verified
    elif verified.expires <= time.time() - leeway:
        _VERIFIED.pop((key, token), None)
        raise InvalidToken("the access token has expired; refresh it or sign in again")
    cutoff = revoked_before(verified.user_id) if revoked_before else None
    if cutoff and datetime.fromtimestamp(verified.issued, UTC) <= datetime.fromisoformat(cutoff):
        raise InvalidToken("the access token was revoked; sign in again")
    return verified.user_id, verified.roles


class _Verified(NamedTuple):
    """What a verified access token says: who, with which roles, issued and expiring when."""

    user_id: str
    roles: frozenset[str]
    issued: float
    expires: float


#: How many verified tokens are remembered (the oldest is forgotten first).
VERIFIED_CACHE_SIZE = 10_000
_VERIFIED: dict[tuple[str, str], _Verified] = {}


def _decode(token: str, key: str, leeway: float) -> _Verified:
    """Check the token's signature and claims; return what it says or raise InvalidToken."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], leeway=leeway,
                            options={"require": ["sub", "exp", "iat"]})
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the access token has expired; refresh it or sign in again") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"the access token is not valid ({exc}); sign in again") from None
    user_id, roles = claims.get("sub"), claims.get("roles", [])
    if not isinstance(user_id, str) or not user_id or not isinstance(roles, list) \
            or not all(isinstance(role, str) for role in roles):
        raise InvalidToken("the access token's claims are not valid; sign in again")
    return _Verified(user_id, frozenset(roles), float(claims["iat"]), float(claims["exp"]))


class RefreshToken:
    """A new refresh token: the text for the client and what the server keeps."""

    __slots__ = ("secret_hash", "text", "token_id", "user_id")

    def __init__(self, user_id: str, token_id: str, secret: str) -> None:
        self.user_id = user_id
        self.token_id = token_id
        self.text = f"{user_id}.{token_id}.{secret}"
        self.secret_hash = hash_secret(secret)


def new_refresh_token(user_id: str) -> RefreshToken:
    """Return a fresh random refresh token of ``user_id`` (a 32-hex user id)."""
    return RefreshToken(user_id, uuid.uuid4().hex, secrets.token_urlsafe(32))


def parse_refresh_token(text: str) -> tuple[str, str, str]:
    """Return (user id, token id, secret hash) of a refresh token; raise InvalidToken."""
    match = _REFRESH.fullmatch(text.strip())
    if not match:
        raise InvalidToken("the refresh token is not valid; sign in again")
    return match.group(1), match.group(2), hash_secret(match.group(3))


def hash_secret(secret: str) -> str:
    """Return the SHA-256 of a refresh token's secret (random enough not to need salt)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(stored_hash: str, presented_hash: str) -> bool:
    """Return True if the hashes match (in constant time)."""
    return hmac.compare_digest(stored_hash, presented_hash)


# -- Passwords ------------------------------------------------------------------------------


def _cost(cost: str | None) -> str:
    return cost if cost is not None else _settings().password_hash_cost


async def hash_password(password: str, *, cost: str | None = None) -> str:
    """Return the argon2id hash of ``password`` at the settings' cost (models/users.py)."""
    return await users.hash_password(password, cost=_cost(cost))


async def verify_password(password_hash: str, password: str, *, cost: str | None = None) -> bool:
    """Return True if ``password`` matches ``password_hash`` (models/users.py)."""
    return await users.verify_password(password_hash, password, cost=_cost(cost))
