"""web/tokens.py: access tokens refuse expired, tampered, unsigned and foreign tokens."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from web.tokens import (
    InvalidToken,
    hash_password,
    issue_access_token,
    new_refresh_token,
    parse_refresh_token,
    same_secret,
    verify_access_token,
    verify_password,
)

SECRET = "s" * 64
OTHER_SECRET = "o" * 64
USER = "0123456789abcdef0123456789abcdef"


def issue(**overrides: object) -> str:
    options: dict[str, object] = {"secret": SECRET, "ttl": 60.0}
    options.update(overrides)
    return issue_access_token(USER, ["customer"], **options)  # type: ignore[arg-type]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_fresh_token_gives_back_its_user_and_roles() -> None:
    token = issue_access_token(USER, ["admin", "customer", "admin"], secret=SECRET, ttl=60)
    assert verify_access_token(token, secret=SECRET) == (USER, frozenset({"admin", "customer"}))


def test_the_token_carries_the_documented_claims() -> None:
    claims = jwt.decode(issue(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == USER
    assert claims["roles"] == ["customer"]
    assert claims["exp"] - claims["iat"] == 60
    assert len(claims["jti"]) == 32
    assert jwt.get_unverified_header(issue())["alg"] == "HS256"


def test_every_token_has_its_own_id() -> None:
    first, second = (jwt.decode(issue(), SECRET, algorithms=["HS256"]) for _ in range(2))
    assert first["jti"] != second["jti"]


def test_an_expired_token_is_refused() -> None:
    token = issue(now=datetime.now(UTC) - timedelta(seconds=120))
    with pytest.raises(InvalidToken, match="expired"):
        verify_access_token(token, secret=SECRET)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(InvalidToken, match="not valid"):
        verify_access_token(issue(secret=OTHER_SECRET), secret=SECRET)


def test_a_tampered_payload_is_refused() -> None:
    header, payload, signature = issue().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    with pytest.raises(InvalidToken):
        verify_access_token(f"{header}.{_b64(claims)}.{signature}", secret=SECRET)


def test_an_unsigned_alg_none_token_is_refused() -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": USER, "roles": ["admin"], "iat": now, "exp": now + 60}
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(InvalidToken):
        verify_access_token(token, secret=SECRET)


def test_another_algorithm_with_the_same_secret_is_refused() -> None:
    now = datetime.now(UTC)
    token = jwt.encode({"sub": USER, "roles": [], "iat": now, "exp": now + timedelta(60)},
                       SECRET, algorithm="HS512")
    with pytest.raises(InvalidToken):
        verify_access_token(token, secret=SECRET)


def test_a_token_without_a_subject_is_refused() -> None:
    now = datetime.now(UTC)
    token = jwt.encode({"roles": [], "iat": now, "exp": now + timedelta(60)}, SECRET,
                       algorithm="HS256")
    with pytest.raises(InvalidToken):
        verify_access_token(token, secret=SECRET)


def test_invalid_token_answers_401() -> None:
    assert InvalidToken.status == 401


@given(st.text(max_size=300))
def test_garbage_is_refused_never_crashes(text: str) -> None:
    with pytest.raises(InvalidToken):
        verify_access_token(text, secret=SECRET)


def test_a_refresh_token_parses_back_to_its_ids_and_hash() -> None:
    refresh = new_refresh_token(USER)
    user_id, token_id, secret_hash = parse_refresh_token(refresh.text)
    assert (user_id, token_id) == (USER, refresh.token_id)
    assert same_secret(refresh.secret_hash, secret_hash)
    assert refresh.secret_hash not in refresh.text


def test_refresh_tokens_are_unique() -> None:
    assert new_refresh_token(USER).text != new_refresh_token(USER).text


@given(st.text(max_size=200))
def test_a_malformed_refresh_token_is_refused(text: str) -> None:
    with pytest.raises(InvalidToken):
        parse_refresh_token(text + "!")


async def test_a_password_verifies_against_its_hash_only() -> None:
    password_hash = await hash_password("correct horse", cost="light")
    assert "correct horse" not in password_hash
    assert password_hash.startswith("$argon2id$")
    assert await verify_password(password_hash, "correct horse", cost="light")
    assert not await verify_password(password_hash, "wrong horse", cost="light")
    assert not await verify_password("not a hash", "correct horse", cost="light")


def test_a_token_issued_before_a_revocation_is_refused() -> None:
    issued = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    token = issue_access_token("u1", ["customer"], secret=SECRET, now=issued, ttl=10**9)
    cut = {"u1": (issued + timedelta(seconds=5)).isoformat()}
    with pytest.raises(InvalidToken, match="revoked"):
        verify_access_token(token, secret=SECRET, revoked_before=cut.get)
    assert verify_access_token(token, secret=SECRET, revoked_before={}.get)[0] == "u1"


def test_a_verified_token_is_remembered_and_not_decoded_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = issue()
    assert verify_access_token(token, secret=SECRET)[0] == USER

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(jwt, "decode", no_decoding)
    assert verify_access_token(token, secret=SECRET)[0] == USER


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token = issue(ttl=60.0)
    verify_access_token(token, secret=SECRET)
    later = datetime.now(UTC).timestamp() + 61
    monkeypatch.setattr("web.tokens.time.time", lambda: later)
    with pytest.raises(InvalidToken, match="expired"):
        verify_access_token(token, secret=SECRET)


def test_a_remembered_token_is_still_revoked() -> None:
    token = issue()
    verify_access_token(token, secret=SECRET)
    cut = {USER: (datetime.now(UTC) + timedelta(seconds=1)).isoformat()}
    with pytest.raises(InvalidToken, match="revoked"):
        verify_access_token(token, secret=SECRET, revoked_before=cut.get)


def test_a_remembered_token_is_refused_under_another_secret() -> None:
    token = issue()
    verify_access_token(token, secret=SECRET)
    with pytest.raises(InvalidToken, match="not valid"):
        verify_access_token(token, secret=OTHER_SECRET)


def test_the_memory_of_verified_tokens_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from web import tokens

    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    monkeypatch.setattr(tokens, "_VERIFIED", {})
    for _ in range(5):
        verify_access_token(issue(), secret=SECRET)
    assert len(tokens._VERIFIED) == 3
