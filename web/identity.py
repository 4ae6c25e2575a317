"""Who is calling: the caller's user id and roles, and the checks views declare.

The caller is named by ``Authorization: Bearer <access token>`` (a JWT from
``POST /api/auth/login``, see web/tokens.py); no header means anonymous, a bad or expired
token is a 401. Views use :func:`identity`, :func:`require` and :func:`may_see` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from aiohttp import web
from faust.web import Request

from tables.users import revocations
from web.errors import ApiError
from web.tokens import verify_access_token

__all__ = [
    "Forbidden",
    "Identity",
    "Unauthorized",
    "identity",
    "may_see",
    "rate_key",
    "require",
]

ROLES = frozenset({"customer", "support", "admin"})


class Unauthorized(ApiError):
    """The request names no caller; sign in (POST /api/auth/login) and send the token."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """The caller may not do this."""

    status = 403
    code = "forbidden"


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller: a user id (empty when anonymous) and roles."""

    user_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        """Return True for admins."""
        return "admin" in self.roles


ANONYMOUS = Identity("", frozenset())
_CALLER = web.RequestKey("caller", Identity)


def identity(request: Request) -> Identity:
    """Return the caller of ``request`` from its bearer token (none: anonymous).

    The token is checked once per request (the rate limit asks first, then the view).
    """
    known = request.get(_CALLER)  # type: ignore[attr-defined]
    if known is not None:
        return cast(Identity, known)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not scheme:
        return ANONYMOUS
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the access token as 'Authorization: Bearer <token>'")
    user_id, roles = verify_access_token(token.strip(), revoked_before=_revoked_before)
    caller = Identity(user_id, roles & ROLES)
    request[_CALLER] = caller  # type: ignore[index]
    return caller


def _revoked_before(user_id: str) -> str | None:
    row = revocations.get(user_id)
    return row["before"] if row else None


def require(request: Request, *roles: str) -> Identity:
    """Return the caller if they have one of ``roles``; else 401 (anonymous) or 403."""
    caller = identity(request)
    if not caller.user_id:
        raise Unauthorized("this needs a signed-in user: send 'Authorization: Bearer <token>' "
                           "(POST /api/auth/login gives one)")
    if roles and not caller.roles & set(roles):
        raise Forbidden(f"this needs the role {' or '.join(roles)}")
    return caller


def may_see(caller: Identity, owner_id: str) -> bool:
    """Return True if ``caller`` may see a resource of ``owner_id`` (the owner or an admin)."""
    return caller.is_admin or caller.user_id == owner_id


def rate_key(request: Request) -> str:
    """Return whom a request counts against for rate limits: its user, else its address."""
    try:
        caller = identity(request)
    except ApiError:
        caller = ANONYMOUS
    if caller.user_id:
        return f"user:{caller.user_id}"
    return f"address:{getattr(request, 'remote', '') or '?'}"
