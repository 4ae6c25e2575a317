"""Notification rules: who gets what, duplicates never notify twice, opt-outs are honoured."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.base import Event, new_event_id
from models.inbox import (
    LIMIT,
    digest_mail,
    mark_read,
    newer_than,
    preferences,
    promotion_mail,
    receive,
    receive_alert,
    set_contact,
    set_preferences,
)
from models.notifications import (
    AdminAlert,
    DigestBroadcast,
    Notify,
    PromotionBroadcast,
    notices_for,
    notification_id,
)
from models.orders import OrderUpdate
from models.support import TicketChanged
from models.users import ProfileUpdated, UserRegistered

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
Row = dict[str, Any]


def registered(user_id: str = "u1", email: str = "ada@example.com") -> UserRegistered:
    return UserRegistered(type="user_registered", event_id=new_event_id(), occurred_at=NOW,
                          user_id=user_id, email=email, name="Ada", password_hash="h",
                          roles=["customer"], created_at=NOW.isoformat())


def order_update(status: str, user_id: str = "u1", event_id: str | None = None) -> OrderUpdate:
    return OrderUpdate(type=f"order_{status}", event_id=event_id or new_event_id(),
                       occurred_at=NOW, order_id="o" * 32, user_id=user_id, status=status,
                       total_cents=1250, reason="")


def ticket_change(change: str, role: str, actor: str = "staff-1") -> TicketChanged:
    return TicketChanged(type="ticket_changed", event_id=new_event_id(), occurred_at=NOW,
                         change=change, ticket_id="t1", user_id="u1", subject="Help",
                         status="open", opened_at=NOW.isoformat(), open_since=NOW.isoformat(),
                         actor_id=actor, actor_role=role)


def the_notify(event: Event) -> Notify:
    [effect] = notices_for(event)
    assert effect.topic == "notifications" and isinstance(effect.event, Notify)
    return effect.event


def test_a_registration_welcomes_the_user_and_carries_their_address() -> None:
    note = the_notify(registered())
    assert (note.kind, note.user_id, note.email) == ("welcome", "u1", "ada@example.com")
    row, mails = receive(None, note, 3)
    assert row["email"] == "ada@example.com" and row["partition"] == 3 and not mails
    assert row["unread"] == 1 and row["items"][0]["seq"] == 1


def test_order_notices_notify_the_customer_and_a_confirmation_mails_a_receipt() -> None:
    row, _ = receive(None, the_notify(registered()), 0)
    for status in ("confirmed", "shipped", "delivered", "cancelled", "rejected",
                   "payment_failed", "expired"):
        note = the_notify(order_update(status))
        assert note.kind == f"order_{status}" and note.link.startswith("/orders/")
        row, mails = receive(row, note, 0)
        assert [m.kind for m in mails] == (["receipt"] if status == "confirmed" else [])
    assert notices_for(order_update("placed")) == []
    assert row["unread"] == 8 and [i["seq"] for i in row["items"]] == list(range(1, 9))


def test_a_receipt_is_sent_even_to_a_user_who_opted_out_of_everything() -> None:
    row, _ = receive(None, the_notify(registered()), 0)
    row = set_preferences(row, "u1", False, False, 0)
    _, mails = receive(row, the_notify(order_update("confirmed")), 0)
    assert [(m.kind, m.to) for m in mails] == [("receipt", "ada@example.com")]


def test_support_answers_and_resolutions_notify_the_customer_not_their_own_comments() -> None:
    assert the_notify(ticket_change("commented", "support")).kind == "ticket_answered"
    assert the_notify(ticket_change("resolved", "admin")).kind == "ticket_resolved"
    assert notices_for(ticket_change("commented", "customer", actor="u1")) == []
    assert notices_for(ticket_change("assigned", "support")) == []


def test_a_profile_change_updates_the_name_and_admin_alerts_go_to_the_admins_row() -> None:
    [effect] = notices_for(ProfileUpdated(type="profile_updated", event_id="e1",
                                          occurred_at=NOW, user_id="u1", name="Ada L."))
    assert effect.key == "u1" and effect.event.type == "contact_changed"
    row = set_contact(None, "u1", "Ada L.", "", 2)
    assert row["name"] == "Ada L." and row["email"] == ""
    alert = AdminAlert(type="admin_alert", event_id="log-1", occurred_at=NOW, user_id="admins",
                       level="ERROR", service="orders", message="boom")
    admins = receive_alert(None, alert, 1)
    assert admins["items"][0]["title"] == "ERROR in orders" and admins["unread"] == 1
    assert receive_alert(admins, alert, 1) == admins  # the same record alerts once


def test_marking_read_counts_down_and_unknown_ids_change_nothing() -> None:
    row, _ = receive(None, the_notify(registered()), 0)
    note_id = row["items"][0]["id"]
    assert mark_read(row, "u1", "nope", 0)["unread"] == 1
    read = mark_read(row, "u1", note_id, 0)
    assert read["unread"] == 0 and read["items"][0]["read"] is True


def test_a_row_keeps_the_newest_notifications_and_numbers_them_on() -> None:
    row: Row | None = None
    for _ in range(LIMIT + 5):
        row, _ = receive(row, the_notify(order_update("shipped")), 0)
    assert row is not None and len(row["items"]) == LIMIT and row["seq"] == LIMIT + 5
    assert [i["seq"] for i in newer_than(row, LIMIT + 3)] == [LIMIT + 4, LIMIT + 5]


def test_promotion_and_digest_mail_honour_the_preferences() -> None:
    row, _ = receive(None, the_notify(registered()), 0)
    promo = PromotionBroadcast(type="promotion_broadcast", event_id="b", occurred_at=NOW,
                               partition=0, code="TEN", title="10% off", body="Now",
                               source_id="p1")
    digest = DigestBroadcast(type="digest_broadcast", event_id="d", occurred_at=NOW,
                             partition=0, week="2026-W48")
    assert preferences(row) == {"marketing": True, "digest": True}
    mail = promotion_mail(row, promo)
    assert mail is not None and mail.values["code"] == "TEN"
    assert promotion_mail(row, promo) == mail  # the same id for the same promotion and user
    assert digest_mail(row, digest) is not None
    quiet = set_preferences(row, "u1", False, False, 0)
    assert promotion_mail(quiet, promo) is None and digest_mail(quiet, digest) is None
    assert promotion_mail(set_contact(None, "u2", "No Mail", "", 0), promo) is None


def test_ids_derive_from_the_source_event_and_the_kind() -> None:
    assert notification_id("e1", "welcome") == notification_id("e1", "welcome")
    assert notification_id("e1", "welcome") != notification_id("e1", "receipt")
    assert notification_id("e1", "welcome") != notification_id("e2", "welcome")


SOURCES = st.lists(st.sampled_from(["confirmed", "shipped", "delivered", "cancelled"]),
                   min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(statuses=SOURCES, data=st.data())
def test_replays_and_duplicates_never_notify_twice(statuses: list[str],
                                                   data: st.DataObject) -> None:
    events = [order_update(status, event_id=f"src-{i}") for i, status in enumerate(statuses)]
    deliveries = data.draw(st.lists(st.sampled_from(events), min_size=len(events),
                                    max_size=4 * len(events)))
    deliveries = [*events, *deliveries]  # every event at least once, some many times
    row: Row | None = None
    receipts: list[str] = []
    for event in data.draw(st.permutations(deliveries)):
        row, mails = receive(row, the_notify(event), 0)
        receipts.extend(mail.id for mail in mails)
    assert row is not None
    assert len(row["items"]) == len(events)
    assert len({item["id"] for item in row["items"]}) == len(events)
    assert [item["seq"] for item in row["items"]] == list(range(1, len(events) + 1))
    assert len(receipts) == len(set(receipts))


@settings(max_examples=150, deadline=None)
@given(choices=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=6),
       has_email=st.booleans())
def test_an_opt_out_never_yields_marketing_mail(choices: list[tuple[bool, bool]],
                                                has_email: bool) -> None:
    row: Row = set_contact(None, "u1", "Ada", "ada@example.com" if has_email else "", 0)
    promo = PromotionBroadcast(type="promotion_broadcast", event_id="b", occurred_at=NOW,
                               partition=0, code="TEN", title="t", body="b", source_id="p")
    digest = DigestBroadcast(type="digest_broadcast", event_id="d", occurred_at=NOW,
                             partition=0, week="w")
    row, _ = receive(row, the_notify(order_update("shipped")), 0)
    for marketing, digest_on in choices:
        row = set_preferences(row, "u1", marketing, digest_on, 0)
        if not marketing or not has_email:
            assert promotion_mail(row, promo) is None
        else:
            assert promotion_mail(row, promo) is not None
        if not digest_on or not has_email:
            assert digest_mail(row, digest) is None
