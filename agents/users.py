"""Users agents: the e-mail claims (the single writer of addresses) and the user rows.

``users.emails`` consumes ``user-emails`` [e-mail]: the first claim of an address wins and
registers the user on ``users``; the rest are refused. ``users.profiles`` consumes ``users``
[user id] into the users table and tells the e-mail index when login data change. Both wake
the requests waiting on this worker for their decision. At start, the first admin
(SHOP_ADMIN_EMAIL and SHOP_ADMIN_PASSWORD) is claimed with a user id derived from the
address, so restarts and other workers claim the same user, never a second one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.sending import send_all, to_sends
from agents.topics import revocations_topic, user_emails_topic, users_topic
from app import app
from models.base import Event, utcnow
from models.users import (
    EMAIL_EVENTS,
    REVOCATION_EVENTS,
    USER_EVENTS,
    AccessRevoked,
    ClaimEmail,
    LoginChanged,
    apply_user_event,
    decide_claim,
    hash_password,
    revoked_before,
)
from tables.replay import Position, Send, decide_once, update_once
from tables.users import email_watchers, emails, revocations, user_watchers, users

__all__ = [
    "admin_user_id",
    "claim_emails",
    "keep_revocations",
    "register_first_admin",
    "update_users",
]

log = logging.getLogger(__name__)

#: Namespace of the first admin's user id (uuid5 of the e-mail address).
ADMIN_IDS = uuid.UUID("0b6f0e8e-52a7-4c52-9f3c-4f2c8a1e7d20")


async def apply_email_event(event: ClaimEmail | LoginChanged, position: Position) -> None:
    """Decide a claim (or apply a login change) once, send what it causes, wake the waiters."""
    now_iso = utcnow().isoformat()

    def step(row: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[Send]]:
        new_row, effects = decide_claim(row, event, now_iso)
        return new_row, to_sends(effects)

    sends = decide_once(emails, event.email, position, step, table_name="emails")
    await send_all(sends)
    row = emails.get(event.email)
    if row is not None:
        email_watchers.changed(event.email, row)


async def apply_revocation(event: AccessRevoked, position: Position) -> None:
    """Record that a user's earlier access tokens no longer count, once."""
    update_once(revocations, event.user_id, position, lambda row: revoked_before(row, event))


@app.agent(revocations_topic, name="users.revocations")
async def keep_revocations(stream: StreamT[bytes]) -> None:
    """Consume the revocations topic into every worker's revocations table."""
    await for_each_event(stream, REVOCATION_EVENTS, apply_revocation, agent="users.revocations")


@app.agent(user_emails_topic, name="users.emails")
async def claim_emails(stream: StreamT[bytes]) -> None:
    """Consume e-mail claims and login changes into the emails table."""
    await for_each_event(stream, EMAIL_EVENTS, apply_email_event, agent="users.emails")


async def apply_user(event: Event, position: Position) -> None:
    """Apply one user event once, send the login changes it causes, wake the waiters."""
    user_id: str = event.user_id
    now_iso = utcnow().isoformat()

    def step(row: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[Send]]:
        decision = apply_user_event(row, event, now_iso)
        return decision.row, to_sends(decision.effects)

    sends = decide_once(users, user_id, position, step, table_name="users")
    await send_all(sends)
    row = users.get(user_id)
    if row is not None:
        user_watchers.changed(user_id, row)


@app.agent(users_topic, name="users.profiles")
async def update_users(stream: StreamT[bytes]) -> None:
    """Consume user events into the users table."""
    await for_each_event(stream, USER_EVENTS, apply_user, agent="users.profiles")


def admin_user_id(email: str) -> str:
    """Return the user id of the first admin with ``email`` (the same on every start)."""
    return uuid.uuid5(ADMIN_IDS, email).hex


@app.task
async def register_first_admin() -> None:
    """Claim SHOP_ADMIN_EMAIL for the first admin, if set (a taken address is left alone)."""
    if not (app.settings.admin_email and app.settings.admin_password):
        return
    settings = app.settings
    email = settings.admin_email
    password_hash = await hash_password(settings.admin_password,
                                        cost=settings.password_hash_cost)
    claim = ClaimEmail.new(email=email, user_id=admin_user_id(email), name="Administrator",
                           password_hash=password_hash, roles=["admin", "customer"],
                           correlation_id="first-admin")
    for attempt in range(30):
        try:
            await (await user_emails_topic.send(key=email, value=claim.dumps()))
            log.info("asked to register the first admin %s", email)
            return
        except Exception as exc:  # the producer may not be up yet at the very start
            log.warning("first admin not claimed yet (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(min(5.0, 0.5 * (attempt + 1)))
    log.error("could not claim the first admin %s; set it again and restart", email)
