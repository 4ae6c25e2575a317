"""models/users.py: e-mail keys, the password policy, the claim and the user row."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import users
from models.users import (
    MAX_SESSIONS,
    AccessRevoked,
    ClaimEmail,
    LoginChanged,
    PasswordChanged,
    ProfileUpdated,
    SessionEnded,
    SessionRotated,
    SessionStarted,
    UserDeactivated,
    UserRegistered,
    apply_user_event,
    decide_claim,
    normalise_email,
    password_problem,
    public_user,
    revoked_before,
)

NOW = "2026-01-01T00:00:00+00:00"
LATER = "2026-02-01T00:00:00+00:00"
local_parts = st.from_regex(r"[A-Za-z0-9._+-]{1,20}", fullmatch=True)
domains = st.from_regex(r"[A-Za-z0-9-]{1,15}\.[A-Za-z]{2,6}", fullmatch=True)


def claim(user_id: str = "u1", email: str = "ada@example.com") -> ClaimEmail:
    return ClaimEmail.new(email=email, user_id=user_id, name="Ada",
                          password_hash="$argon2id$hash", roles=["customer"])


def registered(user_id: str = "u1") -> dict[str, object]:
    row, effects = decide_claim(None, claim(user_id), NOW)
    assert row is not None
    event = effects[0].event
    assert isinstance(event, UserRegistered)
    user = apply_user_event(None, event, NOW).row
    assert user is not None
    return user


# -- e-mail addresses and passwords ---------------------------------------------------------


@given(local_parts, domains)
def test_an_address_in_any_case_has_one_key(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    key = normalise_email(address)
    assert key == normalise_email(address.upper()) == normalise_email(f"  {address.swapcase()} ")
    assert key == key.lower() == key.strip()
    assert normalise_email(key) == key


@pytest.mark.parametrize("bad", ["", "ada", "ada@", "@example.com", "ada@example",
                                 "a da@example.com", "ada@@example.com",
                                 "a" * 250 + "@example.com"])
def test_what_is_not_an_address_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="e-mail"):
        normalise_email(bad)


@given(st.text(min_size=8, max_size=128))
def test_passwords_of_8_to_128_characters_pass(password: str) -> None:
    assert password_problem(password) is None


@given(st.text(max_size=7))
def test_short_passwords_are_refused(password: str) -> None:
    assert password_problem(password) == "must be at least 8 characters long"


def test_long_passwords_are_refused() -> None:
    assert password_problem("x" * 129) == "must be at most 128 characters long"


# -- the e-mail claim -----------------------------------------------------------------------


def test_the_first_claim_of_a_free_address_registers_the_user() -> None:
    row, effects = decide_claim(None, claim("u1"), NOW)
    assert row is not None
    assert (row["user_id"], row["active"], row["roles"]) == ("u1", True, ["customer"])
    [effect] = effects
    assert (effect.topic, effect.key) == ("users", "u1")
    assert isinstance(effect.event, UserRegistered)
    assert effect.event.password_hash == "$argon2id$hash"


@given(st.lists(st.sampled_from(["u1", "u2", "u3", "u4"]), min_size=1, max_size=20))
def test_of_many_claims_only_the_first_wins(claimants: list[str]) -> None:
    row = None
    registrations = []
    for user_id in claimants:
        new_row, effects = decide_claim(row, claim(user_id), NOW)
        row = new_row if new_row is not None else row
        registrations += effects
    assert row is not None and row["user_id"] == claimants[0]
    assert [e.key for e in registrations] == [claimants[0]]


def test_a_login_change_updates_the_owner_only() -> None:
    row, _ = decide_claim(None, claim("u1"), NOW)
    change = LoginChanged.new(email="ada@example.com", user_id="u1", password_hash="new",
                              active=False)
    changed, effects = decide_claim(row, change, NOW)
    assert changed is not None and (changed["password_hash"], changed["active"]) == ("new", False)
    assert effects == []
    stranger = LoginChanged.new(email="ada@example.com", user_id="u2", password_hash="x",
                                active=True)
    assert decide_claim(row, stranger, NOW) == (None, [])


# -- the user row ---------------------------------------------------------------------------


def test_a_registered_user_shows_no_secrets() -> None:
    shown = public_user(registered())
    assert shown == {"id": "u1", "email": "ada@example.com", "name": "Ada",
                     "roles": ["customer"], "created_at": NOW, "active": True}


def test_registering_twice_changes_nothing() -> None:
    user = registered()
    again = UserRegistered.new(user_id="u1", email="x@example.com", name="X", password_hash="h",
                               roles=["admin"], created_at=LATER)
    assert apply_user_event(user, again, NOW).row == user


def test_events_for_an_unknown_user_write_nothing() -> None:
    assert apply_user_event(None, ProfileUpdated.new(user_id="u9", name="X"), NOW).row is None


def test_a_profile_update_changes_the_name() -> None:
    row = apply_user_event(registered(), ProfileUpdated.new(user_id="u1", name="Grace"), NOW).row
    assert row is not None and row["name"] == "Grace"


def start(user: dict[str, object], token_id: str) -> dict[str, object]:
    event = SessionStarted.new(user_id="u1", token_id=token_id, secret_hash=f"h-{token_id}",
                               expires_at=LATER)
    row = apply_user_event(user, event, NOW).row
    assert row is not None
    return row


def test_a_password_change_ends_every_session_and_tells_the_email_index() -> None:
    user = start(registered(), "t1")
    decision = apply_user_event(user, PasswordChanged.new(user_id="u1", password_hash="new"), NOW)
    assert decision.row is not None
    assert (decision.row["password_hash"], decision.row["sessions"]) == ("new", {})
    [effect] = decision.effects
    assert (effect.topic, effect.key) == ("user-emails", "ada@example.com")
    assert isinstance(effect.event, LoginChanged) and effect.event.password_hash == "new"


def test_deactivation_ends_sessions_once_and_refuses_new_ones() -> None:
    user = start(registered(), "t1")
    decision = apply_user_event(user, UserDeactivated.new(user_id="u1", by="admin"), NOW)
    assert decision.row is not None
    assert (decision.row["active"], decision.row["sessions"]) == (False, {})
    assert [type(e.event) for e in decision.effects] == [LoginChanged, AccessRevoked]
    revoked = decision.effects[1]
    assert (revoked.topic, revoked.key, revoked.event.before) == ("revocations", "u1", NOW)
    again = apply_user_event(decision.row, UserDeactivated.new(user_id="u1"), NOW)
    assert again.effects == []
    assert start(decision.row, "t2")["sessions"] == {}


def test_a_rotation_replaces_the_token_once() -> None:
    user = start(registered(), "t1")

    def rotate(row: dict[str, object], new: str) -> dict[str, object]:
        event = SessionRotated.new(user_id="u1", old_token_id="t1", token_id=new,
                                   secret_hash=f"h-{new}", expires_at=LATER)
        result = apply_user_event(row, event, NOW).row
        assert result is not None
        return result

    first = rotate(user, "t2")
    assert set(first["sessions"]) == {"t2"}  # type: ignore[arg-type]
    second = rotate(first, "t3")  # the same old token again: refused
    assert set(second["sessions"]) == {"t2"}  # type: ignore[arg-type]


def test_logout_ends_one_session() -> None:
    user = start(start(registered(), "t1"), "t2")
    row = apply_user_event(user, SessionEnded.new(user_id="u1", token_id="t1"), NOW).row
    assert row is not None and set(row["sessions"]) == {"t2"}


def test_expired_sessions_are_dropped_and_the_newest_kept() -> None:
    user = registered()
    user["sessions"] = {"old": {"secret_hash": "h", "expires_at": "2025-01-01T00:00:00+00:00"}}
    for n in range(MAX_SESSIONS + 5):
        user = start(user, f"t{n:02d}")
    sessions = user["sessions"]
    assert isinstance(sessions, dict)
    assert "old" not in sessions and len(sessions) == MAX_SESSIONS


# -- the e-mails agent (Faust test_context: memory tables, no broker) ----------------------


async def test_the_emails_agent_gives_an_address_to_the_first_claim_only() -> None:
    import asyncio
    import uuid
    from unittest.mock import AsyncMock, patch

    from agents.users import claim_emails
    from tables.users import emails

    address = f"race-{uuid.uuid4().hex[:8]}@example.com"
    first, second = claim("u-first", address), claim("u-second", address)
    with patch("agents.users.send_all", new_callable=AsyncMock) as send_all:
        async with asyncio.timeout(5), claim_emails.test_context() as agent:
            for event in (first, second, first):
                await agent.put(event.dumps(), key=address)
            marker = claim("u-marker", f"marker-{uuid.uuid4().hex[:8]}@example.com")
            await agent.put(marker.dumps(), key=marker.email)
            await agent.put(claim("u-x", marker.email).dumps(), key=marker.email)
    assert emails[address]["user_id"] == "u-first"
    sent = [send for call in send_all.await_args_list for send in call.args[0]]
    registered_keys = {key for topic, key, _ in sent if topic == "users"}
    # The redelivered first claim sends its UserRegistered again (the row's last sends, in
    # case a crash lost them); the users agent absorbs the repeat (registering twice changes
    # nothing). The second claimant never gets a user.
    assert registered_keys == {"u-first", "u-marker"}


def test_the_latest_revocation_cut_off_wins() -> None:
    early = AccessRevoked.new(user_id="u1", before="2026-01-01T00:00:00+00:00")
    late = AccessRevoked.new(user_id="u1", before="2026-02-01T00:00:00+00:00")
    assert revoked_before(revoked_before(None, late), early)["before"] == late.before


async def test_no_more_than_two_password_hashes_run_at_once(monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    running, most = 0, 0
    lock = threading.Lock()

    class CountingHasher:
        def hash(self, password: str) -> str:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.02)
            with lock:
                running -= 1
            return "hash:" + password

    monkeypatch.setattr(users, "_hasher", lambda cost: CountingHasher())
    hashes = await asyncio.gather(*(users.hash_password(f"pw-{n}", cost="standard")
                                    for n in range(8)))
    assert hashes == [f"hash:pw-{n}" for n in range(8)]
    assert most == users.HASHES_AT_ONCE == 2
