"""Authentication HTTP: log in, refresh (rotating the refresh token) and log out.

Login is answered on the worker that owns the e-mail key, whose ``emails`` row holds the
user id, password hash, roles and active flag. Refresh and logout are answered on the worker
that owns the user id key (the refresh token starts with it), whose ``users`` row keeps the
sessions; a refresh replaces its token through the users agent, so a token is used once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from faust.web import Request, Response
from pydantic import BaseModel, Field

from agents.topics import users_topic
from app import app
from models.users import SessionEnded, SessionRotated, SessionStarted, normalise_email
from tables.users import emails, user_watchers, users, wait_for
from web.bodies import read_body
from web.identity import Forbidden
from web.login_throttle import LoginThrottle
from web.middleware import CLIENT_ADDRESS, is_forwarded
from web.openapi import endpoint
from web.routing import on_owner
from web.tokens import (
    InvalidToken,
    hash_password,
    issue_access_token,
    new_refresh_token,
    parse_refresh_token,
    same_secret,
    verify_password,
)
from web.views import ShopView

__all__ = ["LoggedOut", "LoginIn", "RefreshIn", "TokensOut"]


# -- Answers -------------------------------------------------------------------------------


class TokensOut(BaseModel):
    """The tokens of a login or refresh."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: int


class LoggedOut(BaseModel):
    """A logout's answer."""

    status: Literal["logged_out"]

#: How long a refresh waits for a just-issued token to reach the users row (a login's
#: SessionStarted is sent before the login answers, so this is rarely waited for).
NEW_SESSION_WAIT_S = 2.0
#: How long a refresh waits for the users agent to decide its rotation.
SESSION_WAIT_S = 5.0
WRONG_CREDENTIALS = "wrong e-mail or password"

#: A hash to check unknown addresses against, so they take as long as known ones.
_decoy_hash: str | None = None


class LoginIn(BaseModel):
    """E-mail (any case) and password."""

    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)


class RefreshIn(BaseModel):
    """A refresh token from login or from the last refresh."""

    refresh_token: str = Field(max_length=200)


def token_answer(access_token: str, refresh_token: str) -> dict[str, Any]:
    """Return the body of a login or refresh answer."""
    return {"access_token": access_token, "refresh_token": refresh_token,
            "token_type": "bearer", "expires_in": int(app.settings.access_token_ttl)}


def refresh_expiry() -> str:
    """Return when a refresh token issued now expires (ISO, UTC)."""
    return (datetime.now(UTC) + timedelta(seconds=app.settings.refresh_token_ttl)).isoformat()


async def _check_password(row: dict[str, Any] | None, password: str) -> bool:
    global _decoy_hash
    if row is None:
        _decoy_hash = _decoy_hash or await hash_password("not a password of anyone")
        await verify_password(_decoy_hash, password)
        return False
    return await verify_password(row["password_hash"], password)


#: Failed logins on this worker (logins are checked on the owner of the e-mail key).
throttle = LoginThrottle()


def client_address(request: Request) -> str:
    """Return the caller's address (as the first worker saw it, if the request was forwarded)."""
    if is_forwarded(request, app.settings.jwt_secret):
        return request.headers.get(CLIENT_ADDRESS, "?")
    return str(getattr(request, "remote", "") or "?")


@endpoint("POST", "/api/auth/login", body=LoginIn, response=TokensOut, errors=(401, 403, 429))
class LoginView(ShopView):
    """Log in: an access token and a refresh token; 401 for a wrong e-mail or password."""

    async def post(self, request: Request) -> Response:
        body = await read_body(request, LoginIn)
        try:
            email = normalise_email(body.email)
        except ValueError:
            raise InvalidToken(WRONG_CREDENTIALS) from None

        async def local() -> Response:
            keys = (f"account:{email}", f"address:{client_address(request)}")
            throttle.check(keys)
            row = emails.get(email)
            if not await _check_password(row, body.password):
                throttle.failed(keys)
                raise InvalidToken(WRONG_CREDENTIALS)
            throttle.succeeded(keys[0])
            assert row is not None
            if not row["active"]:
                raise Forbidden("this account is deactivated")
            refresh = new_refresh_token(row["user_id"])
            started = SessionStarted.new(user_id=row["user_id"], token_id=refresh.token_id,
                                         secret_hash=refresh.secret_hash,
                                         expires_at=refresh_expiry(),
                                         correlation_id=row["user_id"])
            await (await users_topic.send(key=row["user_id"], value=started.dumps()))
            access = issue_access_token(row["user_id"], row["roles"])
            return self.json(token_answer(access, refresh.text))

        return await on_owner(emails.name, email, request, local)


@endpoint("POST", "/api/auth/refresh", body=RefreshIn, response=TokensOut, errors=(401,))
class RefreshView(ShopView):
    """Swap a refresh token for new tokens; the old refresh token stops working."""

    async def post(self, request: Request) -> Response:
        body = await read_body(request, RefreshIn)
        user_id, token_id, secret_hash = parse_refresh_token(body.refresh_token)

        async def local() -> Response:
            row = await wait_for(user_watchers, users, user_id,
                                 lambda row: token_id in (row or {}).get("sessions", {}),
                                 NEW_SESSION_WAIT_S)
            session = (row or {}).get("sessions", {}).get(token_id)
            if row is None or session is None or not row["active"] \
                    or not same_secret(session["secret_hash"], secret_hash) \
                    or session["expires_at"] <= datetime.now(UTC).isoformat():
                raise InvalidToken("the refresh token is not valid any more; sign in again")
            refresh = new_refresh_token(user_id)
            rotated = SessionRotated.new(user_id=user_id, old_token_id=token_id,
                                         token_id=refresh.token_id,
                                         secret_hash=refresh.secret_hash,
                                         expires_at=refresh_expiry(), correlation_id=user_id)
            watching = user_watchers.watch(user_id)
            await (await users_topic.send(key=user_id, value=rotated.dumps()))

            def decided(row: dict[str, Any] | None) -> bool:
                sessions = (row or {}).get("sessions", {})
                return refresh.token_id in sessions or token_id not in sessions

            after = await wait_for(user_watchers, users, user_id, decided, SESSION_WAIT_S,
                                   watching=watching)
            if refresh.token_id not in (after or {}).get("sessions", {}):
                raise InvalidToken("the refresh token was already used; sign in again")
            access = issue_access_token(user_id, row["roles"])
            return self.json(token_answer(access, refresh.text))

        return await on_owner(users.name, user_id, request, local)


@endpoint("POST", "/api/auth/logout", body=RefreshIn, response=LoggedOut, errors=(401,))
class LogoutView(ShopView):
    """Revoke a refresh token (an unknown or already revoked one is fine too)."""

    async def post(self, request: Request) -> Response:
        body = await read_body(request, RefreshIn)
        user_id, token_id, secret_hash = parse_refresh_token(body.refresh_token)

        async def local() -> Response:
            session = (users.get(user_id) or {}).get("sessions", {}).get(token_id)
            # No session yet: the login's SessionStarted may still be on its way; it is ahead
            # of this SessionEnded in the partition, so the revocation still applies.
            if session is None or same_secret(session["secret_hash"], secret_hash):
                ended = SessionEnded.new(user_id=user_id, token_id=token_id,
                                         correlation_id=user_id)
                await (await users_topic.send(key=user_id, value=ended.dumps()))
            return self.json({"status": "logged_out"})

        return await on_owner(users.name, user_id, request, local)
