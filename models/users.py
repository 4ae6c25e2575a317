"""Users: events, the e-mail claim and the user row, as pure functions.

Two single writers keep the rules race-free across workers:

- ``user-emails`` [normalised e-mail]: :func:`decide_claim` gives an address to the first
  ``ClaimEmail`` and refuses the others; the ``emails`` row also holds what login needs
  (user id, password hash, roles, active), kept in step by ``LoginChanged``.
- ``users`` [user id]: :func:`apply_user_event` builds the user row (profile, password hash,
  active flag and the refresh-token sessions) and says which login changes to send back.

Only password hashes travel on topics, never passwords.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from models.base import Effect, Event, event_types

__all__ = [
    "EMAIL_EVENTS",
    "MAX_SESSIONS",
    "REVOCATION_EVENTS",
    "USER_EVENTS",
    "AccessRevoked",
    "ClaimEmail",
    "LoginChanged",
    "PasswordChanged",
    "ProfileUpdated",
    "SessionEnded",
    "SessionRotated",
    "SessionStarted",
    "UserDeactivated",
    "UserDecision",
    "UserRegistered",
    "apply_user_event",
    "decide_claim",
    "hash_password",
    "normalise_email",
    "password_problem",
    "public_user",
    "revoked_before",
    "verify_password",
]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MIN_PASSWORD, MAX_PASSWORD = 8, 128
#: How many refresh-token sessions a user keeps (the newest); older ones stop working.
MAX_SESSIONS = 20

Row = dict[str, Any]


def normalise_email(raw: str) -> str:
    """Return ``raw`` as the key of its address (trimmed, lower case); ValueError if invalid."""
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ValueError("must be an e-mail address such as ada@example.com")
    return email


def password_problem(password: str) -> str | None:
    """Return what is wrong with ``password`` under the policy, or None."""
    if len(password) < MIN_PASSWORD:
        return f"must be at least {MIN_PASSWORD} characters long"
    if len(password) > MAX_PASSWORD:
        return f"must be at most {MAX_PASSWORD} characters long"
    return None


# -- user-emails [email] -------------------------------------------------------------------


class ClaimEmail(Event):
    """A registration asks for ``email`` on behalf of the new user ``user_id``."""

    event_type = "claim_email"
    email: str
    user_id: str
    name: str
    password_hash: str
    roles: list[str]


class LoginChanged(Event):
    """The users agent tells the e-mail index the user's new login data."""

    event_type = "login_changed"
    email: str
    user_id: str
    password_hash: str
    active: bool


EMAIL_EVENTS = event_types(ClaimEmail, LoginChanged)


def decide_claim(row: Row | None, event: ClaimEmail | LoginChanged,
                 now_iso: str) -> tuple[Row | None, list[Effect]]:
    """Return the e-mail row after ``event`` (None: unchanged) and what it causes.

    The first claim of a free address wins and registers the user; a claim of a taken
    address is refused (nothing changes); the same user claiming again changes nothing.
    """
    if isinstance(event, LoginChanged):
        if row is None or row["user_id"] != event.user_id:
            return None, []
        return {**row, "password_hash": event.password_hash, "active": event.active}, []
    if row is not None:
        return None, []
    claimed = {"email": event.email, "user_id": event.user_id, "password_hash": event.password_hash,
               "roles": sorted(set(event.roles)), "active": True, "claimed_at": now_iso}
    registered = UserRegistered.new(
        user_id=event.user_id, email=event.email, name=event.name,
        password_hash=event.password_hash, roles=claimed["roles"], created_at=now_iso,
        correlation_id=event.correlation_id or event.user_id)
    return claimed, [Effect("users", event.user_id, registered)]


# -- users [user id] -----------------------------------------------------------------------


class UserRegistered(Event):
    """A user exists: the e-mail claim succeeded."""

    event_type = "user_registered"
    user_id: str
    email: str
    name: str
    password_hash: str
    roles: list[str]
    created_at: str


class ProfileUpdated(Event):
    """The user changed their name."""

    event_type = "profile_updated"
    user_id: str
    name: str


class PasswordChanged(Event):
    """The user set a new password (its hash); every session ends."""

    event_type = "password_changed"
    user_id: str
    password_hash: str


class UserDeactivated(Event):
    """An admin deactivated the user: no more logins, every session ends."""

    event_type = "user_deactivated"
    user_id: str
    by: str = ""


class AccessRevoked(Event):
    """Access tokens of ``user_id`` issued at or before ``before`` are no longer accepted."""

    event_type = "access_revoked"
    user_id: str
    before: str  # ISO time


REVOCATION_EVENTS = event_types(AccessRevoked)


def revoked_before(row: Row | None, event: AccessRevoked) -> Row:
    """Return the revocation row after ``event`` (the latest cut-off wins)."""
    before = max((row or {}).get("before", ""), event.before)
    return {"user_id": event.user_id, "before": before}


class SessionStarted(Event):
    """A login issued a refresh token (its id and the hash of its secret)."""

    event_type = "session_started"
    user_id: str
    token_id: str
    secret_hash: str
    expires_at: str


class SessionRotated(Event):
    """A refresh asks to replace refresh token ``old_token_id`` with a new one."""

    event_type = "session_rotated"
    user_id: str
    old_token_id: str
    token_id: str
    secret_hash: str
    expires_at: str


class SessionEnded(Event):
    """A logout revoked refresh token ``token_id``."""

    event_type = "session_ended"
    user_id: str
    token_id: str


USER_EVENTS = event_types(UserRegistered, ProfileUpdated, PasswordChanged, UserDeactivated,
                          SessionStarted, SessionRotated, SessionEnded)


@dataclass(frozen=True, slots=True)
class UserDecision:
    """The user row after an event (None: unknown user, nothing written) and its effects."""

    row: Row | None
    effects: list[Effect] = field(default_factory=list)


def apply_user_event(row: Row | None, event: Event, now_iso: str) -> UserDecision:
    """Return the user row after ``event`` and the login changes it causes."""
    if isinstance(event, UserRegistered):
        if row is not None:
            return UserDecision(row)  # registered twice (a replayed claim): once is enough
        return UserDecision({
            "id": event.user_id, "email": event.email, "name": event.name,
            "roles": sorted(event.roles), "created_at": event.created_at, "active": True,
            "password_hash": event.password_hash, "sessions": {}})
    if row is None:
        return UserDecision(None)
    if isinstance(event, ProfileUpdated):
        return UserDecision({**row, "name": event.name})
    if isinstance(event, PasswordChanged):
        changed = {**row, "password_hash": event.password_hash, "sessions": {}}
        return UserDecision(changed, [_login_changed(changed, event)])
    if isinstance(event, UserDeactivated):
        if not row["active"]:
            return UserDecision(row)
        deactivated = {**row, "active": False, "sessions": {}}
        revoked = AccessRevoked.new(user_id=row["id"], before=now_iso,
                                    correlation_id=event.correlation_id or row["id"])
        return UserDecision(deactivated, [_login_changed(deactivated, event),
                                          Effect("revocations", row["id"], revoked)])
    if isinstance(event, SessionStarted | SessionRotated):
        return UserDecision(_with_session(row, event, now_iso))
    if isinstance(event, SessionEnded):
        sessions = {k: v for k, v in row["sessions"].items() if k != event.token_id}
        return UserDecision({**row, "sessions": sessions})
    return UserDecision(row)


def _with_session(row: Row, event: SessionStarted | SessionRotated, now_iso: str) -> Row:
    if not row["active"]:
        return row
    sessions = {k: v for k, v in row["sessions"].items() if v["expires_at"] > now_iso}
    if isinstance(event, SessionRotated):
        if event.old_token_id not in sessions:
            return row  # already rotated or revoked: the refresh is refused
        del sessions[event.old_token_id]
    sessions[event.token_id] = {"secret_hash": event.secret_hash, "expires_at": event.expires_at}
    newest = sorted(sessions.items(), key=lambda item: item[1]["expires_at"])[-MAX_SESSIONS:]
    return {**row, "sessions": dict(newest)}


def _login_changed(row: Row, cause: Event) -> Effect:
    changed = LoginChanged.new(email=row["email"], user_id=row["id"],
                               password_hash=row["password_hash"], active=row["active"],
                               correlation_id=cause.correlation_id or row["id"])
    return Effect("user-emails", row["email"], changed)


def public_user(row: Row) -> Row:
    """Return a user row as the API shows it (no hash, no sessions)."""
    return {k: row[k] for k in ("id", "email", "name", "roles", "created_at", "active")}


# -- Passwords ------------------------------------------------------------------------------
# Hashing is CPU work of the users domain (registration, password changes, the first admin),
# done in a thread so the event loop goes on meanwhile.

#: Hashes computed at once. An Argon2 hash at the standard cost holds 64 MB while it runs and
#: keeps a core busy; the default executor would run six at once (a burst of first logins
#: took a worker's RSS past 400 MB for seconds) without finishing them sooner on two cores.
HASHES_AT_ONCE = 2
_hashing = ThreadPoolExecutor(HASHES_AT_ONCE, thread_name_prefix="argon2")


@cache
def _hasher(cost: str) -> PasswordHasher:
    if cost == "light":  # tests: about a millisecond a hash
        return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return PasswordHasher()


async def hash_password(password: str, *, cost: str) -> str:
    """Return the argon2id hash of ``password`` at ``cost`` (SHOP_PASSWORD_HASH_COST),
    computed in a thread."""
    return await asyncio.get_running_loop().run_in_executor(_hashing, _hasher(cost).hash,
                                                            password)


def _verify(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str, password: str, *, cost: str) -> bool:
    """Return True if ``password`` matches ``password_hash`` (checked in a thread)."""
    return await asyncio.get_running_loop().run_in_executor(
        _hashing, _verify, _hasher(cost), password_hash, password)
