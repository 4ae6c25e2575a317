"""Users HTTP: register, read and change one's profile, read a user, deactivate a user.

Registering is decided on the worker that owns the e-mail key: the request is routed there,
puts a ``ClaimEmail`` on ``user-emails`` and waits for the e-mails agent to decide (409), then
for the user's row the decision registers (201; 202 if that takes longer than
SHOP_WRITE_WAIT_S). A user is read and changed on the worker that owns the user id key.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from faust.web import Request, Response
from pydantic import BaseModel, Field, field_validator

from agents.topics import revocations_topic, user_emails_topic, users_topic
from app import app
from models.base import Event, utcnow
from models.positions import Written
from models.users import (
    AccessRevoked,
    ClaimEmail,
    PasswordChanged,
    ProfileUpdated,
    UserDeactivated,
    normalise_email,
    password_problem,
    public_user,
)
from runtime.tables import derived
from tables.users import email_watchers, emails, user_watchers, users, wait_for
from web.bodies import read_body
from web.errors import Conflict, NotFound
from web.identity import may_see, require
from web.middleware import request_id
from web.openapi import WRITE_ACCEPTED, endpoint
from web.positions import accepted, pending, visible, written
from web.routing import Unavailable, on_owner, route_to_owner
from web.tokens import hash_password
from web.views import ShopView, json_bytes

__all__ = ["Conflict", "ProfileIn", "RegisterIn", "UserOut"]


# -- Answers -------------------------------------------------------------------------------


class UserOut(BaseModel):
    """A user's public profile."""

    id: str
    email: str
    name: str
    roles: list[str]
    created_at: str
    active: bool

#: How long a request waits for the agent's decision before answering 503 (retry).
DECISION_WAIT_S = 10.0
#: The roles a self-registered user gets.
CUSTOMER_ROLES = ["customer"]
#: How long a read of one's own profile waits for a just-registered user's row.
NEW_USER_WAIT_S = 3.0



def _password(value: str) -> str:
    problem = password_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class RegisterIn(BaseModel):
    """A new account: e-mail (unique, any case), password (8-128 characters) and name."""

    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    name: str = Field(min_length=1, max_length=100)

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        return normalise_email(value)

    @field_validator("password")
    @classmethod
    def _policy(cls, value: str) -> str:
        return _password(value)


class ProfileIn(BaseModel):
    """Changes to one's own profile: a new name, a new password, or both."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    password: str | None = Field(default=None, max_length=1024)

    @field_validator("password")
    @classmethod
    def _policy(cls, value: str | None) -> str | None:
        return None if value is None else _password(value)


@endpoint("POST", "/api/users", body=RegisterIn, status=201, response=UserOut,
          errors=(409, 503), also=WRITE_ACCEPTED)
class RegisterView(ShopView):
    """Register a new customer: 201 with the user (readable on every worker), or 409 when
    the e-mail is taken."""

    async def post(self, request: Request) -> Response:
        body = await read_body(request, RegisterIn)

        async def local() -> Response:
            return await self._register(request, body)

        return await on_owner(emails.name, body.email, request, local)

    async def _register(self, request: Request, body: RegisterIn) -> Response:
        if body.email in emails:
            raise Conflict("this e-mail address is already registered")
        password_hash = await hash_password(body.password)
        user_id = uuid.uuid4().hex
        claim = ClaimEmail.new(email=body.email, user_id=user_id, name=body.name,
                               password_hash=password_hash, roles=CUSTOMER_ROLES,
                               correlation_id=request_id(request) or user_id)
        watching = email_watchers.watch(body.email)
        try:
            sent = written(await (await user_emails_topic.send(key=body.email,
                                                               value=claim.dumps())))
        except BaseException:
            email_watchers.forget(body.email, watching)
            raise
        row = await wait_for(email_watchers, emails, body.email, lambda row: row is not None,
                             DECISION_WAIT_S, watching=watching)
        if row is None:
            raise Unavailable("the registration is still being decided; retry in a second")
        if row["user_id"] != user_id:
            raise Conflict("this e-mail address is already registered")
        user = {"id": user_id, "email": body.email, "name": body.name,
                "roles": row["roles"], "created_at": row["claimed_at"], "active": True}
        location = f"/api/users/{user_id}"
        # The claim registers the user's row one hop later, on the user id's owner.
        later = await pending(app, [sent])
        if later:
            return accepted(self, user, location, later)
        return self.json(user, status=201, headers={"Location": location})


async def send_user_event(event: Event, user_id: str
                          ) -> tuple[dict[str, Any], list[Written]]:
    """Send ``event`` about ``user_id`` (on its owner); return the row once it is applied
    (with the login change it causes) and no position, or the row as it was and what is not
    applied yet if the wait ran out."""
    before = users.get(user_id)
    sent = written(await (await users_topic.send(key=user_id, value=event.dumps())))
    later = await pending(app, [sent])
    if later:
        if before is None:
            raise NotFound(f"no user {user_id!r}")
        return before, later
    row = users.get(user_id)
    if row is None:
        raise NotFound(f"no user {user_id!r}")
    return row, []


def shown_user(row: dict[str, Any] | None) -> bytes | None:
    """Return the bytes of a user as the API shows them (None: no user)."""
    return None if row is None else json_bytes(public_user(row))


async def own_row(user_id: str) -> dict[str, Any]:
    """Return the caller's row; a just-registered user's row may be a moment away."""
    row = await wait_for(user_watchers, users, user_id, lambda row: row is not None,
                         NEW_USER_WAIT_S)
    if row is None:
        raise NotFound("no user for this account")
    return row


@endpoint("GET", "/api/users/me", roles=(), response=UserOut, errors=(404, 503),
          summary="The caller's own profile.")
@endpoint("PATCH", "/api/users/me", body=ProfileIn, roles=(), response=UserOut,
          errors=(404, 503), summary="Change the caller's name or password.",
          also=WRITE_ACCEPTED)
class MeView(ShopView):
    """The caller's own profile (GET) and changes to it (PATCH)."""

    async def get(self, request: Request) -> Response:
        caller = require(request)

        async def local() -> Response:
            shown = derived(users, caller.user_id, shown_user)
            if shown is not None:
                return self.json_bytes(shown)
            return self.json(public_user(await own_row(caller.user_id)))

        return await on_owner(users.name, caller.user_id, request, local)

    async def patch(self, request: Request) -> Response:
        caller = require(request)
        body = await read_body(request, ProfileIn)

        async def local() -> Response:
            user_id = caller.user_id
            row = await own_row(user_id)
            sent: list[Written] = []
            if body.name is not None and body.name != row["name"]:
                row, later = await send_user_event(ProfileUpdated.new(
                    user_id=user_id, name=body.name, correlation_id=user_id), user_id)
                sent += later
            if body.password is not None:
                password_hash = await hash_password(body.password)
                row, later = await send_user_event(PasswordChanged.new(
                    user_id=user_id, password_hash=password_hash, correlation_id=user_id),
                    user_id)
                sent += later
            if sent:
                changed = {**public_user(row), **({"name": body.name} if body.name else {})}
                return accepted(self, changed, "/api/users/me", sent)
            return self.json(public_user(row))

        return await on_owner(users.name, caller.user_id, request, local)


@endpoint("GET", "/api/users/{user_id}", roles=(), response=UserOut, errors=(503,))
class UserView(ShopView):
    """One user (the user themself or an admin)."""

    @route_to_owner(users, match_info="user_id")
    async def get(self, request: Request, user_id: str) -> Response:
        caller = require(request)
        if not may_see(caller, user_id):
            raise NotFound(f"no user {user_id!r}")
        row = await own_row(user_id) if caller.user_id == user_id else users.get(user_id)
        if row is None:
            raise NotFound(f"no user {user_id!r}")
        return self.json(public_user(row))


@endpoint("POST", "/api/users/{user_id}/deactivate", roles=("admin",), response=UserOut,
          errors=(503,), also=WRITE_ACCEPTED)
class DeactivateView(ShopView):
    """Deactivate a user (admin): no more logins; their refresh tokens stop working."""

    @route_to_owner(users, match_info="user_id")
    async def post(self, request: Request, user_id: str) -> Response:
        caller = require(request, "admin")
        row = users.get(user_id)
        if row is None:
            raise NotFound(f"no user {user_id!r}")
        if row["active"]:
            # The users agent revokes the user's access tokens too, one hop later; revoking
            # here as well lets the answer wait until every worker refuses them.
            revoked = AccessRevoked.new(user_id=user_id, before=utcnow().isoformat(),
                                        correlation_id=user_id)
            cut = written(await (await revocations_topic.send(key=user_id,
                                                               value=revoked.dumps())))
            (row, later), refused = await asyncio.gather(
                send_user_event(UserDeactivated.new(
                    user_id=user_id, by=caller.user_id, correlation_id=user_id), user_id),
                visible(app, [cut]))
            sent = later + ([] if refused else [cut])
            if sent:
                return accepted(self, {**public_user(row), "active": False},
                                f"/api/users/{user_id}", sent)
        return self.json(public_user(row))
