"""Who is calling: the caller's user id and roles, and the checks views declare.

Until authentication lands (the users issue: JWT bearer tokens), the identity comes from two
headers: ``X-User-Id`` and ``X-Roles`` (comma separated: customer, support, admin). The views
only use :func:`identity`, :func:`require` and :func:`may_see`, so the switch to tokens changes
this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from faust.web import Request

from web.errors import ApiError

__all__ = ["Forbidden", "Identity", "Unauthorized", "identity", "may_see", "require"]

ROLES = frozenset({"customer", "support", "admin"})


class Unauthorized(ApiError):
    """The request names no caller; sign in (for now: send X-User-Id)."""

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


def identity(request: Request) -> Identity:
    """Return the caller of ``request``."""
    user_id = request.headers.get("X-User-Id", "").strip()
    roles = {r.strip() for r in request.headers.get("X-Roles", "").split(",") if r.strip()}
    if user_id and not roles:
        roles = {"customer"}
    return Identity(user_id, frozenset(roles & ROLES))


def require(request: Request, *roles: str) -> Identity:
    """Return the caller if they have one of ``roles``; else 401 (anonymous) or 403."""
    caller = identity(request)
    if not caller.user_id:
        raise Unauthorized("this needs a signed-in user (send X-User-Id)")
    if roles and not caller.roles & set(roles):
        raise Forbidden(f"this needs the role {' or '.join(roles)}")
    return caller


def may_see(caller: Identity, owner_id: str) -> bool:
    """Return True if ``caller`` may see a resource of ``owner_id`` (the owner or an admin)."""
    return caller.is_admin or caller.user_id == owner_id
