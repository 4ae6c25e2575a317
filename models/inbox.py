"""A user's notifications row (the inbox), and which mail it sends, as pure functions.

The notifications agent is the single writer of each row (keyed by user id, or "admins" for
the admins' alerts). A row holds the newest LIMIT notifications, the unread count, a
sequence number per user (each notification's number is the SSE event id, so a stream
resumes exactly after ``Last-Event-ID``), the user's e-mail, name and preferences, and the
partition the row lives in (for the per-partition broadcasts of promotion and digest mail).

Mail decisions honour the preferences when they are made: a receipt (transactional) always
goes out when the address is known; promotion and digest mail only to users who have not
opted out (``marketing``, ``digest``; both on by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.notifications import (
    MARKETING_MAIL,
    RECEIPT_KINDS,
    AdminAlert,
    DigestBroadcast,
    Notify,
    PromotionBroadcast,
    notification_id,
)

__all__ = [
    "DEFAULT_PREFERENCES",
    "KNOWN_IDS",
    "LIMIT",
    "Mail",
    "digest_mail",
    "mark_read",
    "newer_than",
    "preferences",
    "promotion_mail",
    "public_item",
    "receive",
    "receive_alert",
    "set_contact",
    "set_preferences",
]

#: Notifications a row keeps (the newest).
LIMIT = 200
#: Notification ids a row remembers (duplicates of these never notify twice).
KNOWN_IDS = 1000
#: Preferences of a user who has not chosen: every optional mail.
DEFAULT_PREFERENCES = {"marketing": True, "digest": True}

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Mail:
    """A mail to send through ``shop.notifications`` (the id is its message id)."""

    id: str
    kind: str
    to: str
    name: str
    values: dict[str, Any]

    def as_message(self) -> dict[str, Any]:
        """Return the queue message body."""
        return {"id": self.id, "kind": self.kind, "to": self.to, "name": self.name,
                "values": self.values}


def _empty(user_id: str, partition: int) -> Row:
    return {"user_id": user_id, "email": "", "name": "", "partition": partition,
            "prefs": dict(DEFAULT_PREFERENCES), "seq": 0, "unread": 0, "items": [],
            "known": []}


def _row(row: Row | None, user_id: str, partition: int) -> Row:
    base = dict(row) if row else _empty(user_id, partition)
    base["partition"] = partition
    return base


def preferences(row: Row | None) -> dict[str, bool]:
    """Return the user's mail preferences (the defaults when they never chose)."""
    return {**DEFAULT_PREFERENCES, **((row or {}).get("prefs") or {})}


def receive(row: Row | None, note: Notify, partition: int) -> tuple[Row, list[Mail]]:
    """Return the row with ``note`` in it (once) and the mail it causes."""
    new = _row(row, note.user_id, partition)
    if note.email:
        new["email"] = note.email
    if note.name:
        new["name"] = note.name
    if note.notification_id in new["known"]:
        return new, []
    item = {"id": note.notification_id, "seq": new["seq"] + 1, "kind": note.kind,
            "title": note.title, "body": note.body, "link": note.link,
            "created_at": note.created_at, "read": False}
    _add(new, item)
    mails = []
    if note.kind in RECEIPT_KINDS and new["email"]:
        mails.append(Mail(notification_id(note.notification_id, "receipt"), "receipt",
                          new["email"], new["name"],
                          {"title": note.title, "body": note.body, "link": note.link}))
    return new, mails


def receive_alert(row: Row | None, alert: AdminAlert, partition: int) -> Row:
    """Return the admins' row with ``alert`` in it (once)."""
    new = _row(row, alert.user_id, partition)
    alert_id = notification_id(alert.event_id, "admin_alert")
    if alert_id in new["known"]:
        return new
    title = f"{(alert.level or 'ERROR').upper()} in {alert.service or 'a service'}"
    item = {"id": alert_id, "seq": new["seq"] + 1, "kind": "admin_alert", "title": title,
            "body": alert.message or "", "link": "/api/admin/alerts",
            "created_at": alert.logged_at or alert.occurred_at.isoformat(), "read": False,
            "worker": alert.worker}
    _add(new, item)
    return new


def _add(row: Row, item: dict[str, Any]) -> None:
    """Add ``item`` to ``row`` in place (newest last, bounded) and count it."""
    items = [*row["items"], item]
    row["items"] = items[-LIMIT:]
    row["known"] = [*row["known"], item["id"]][-KNOWN_IDS:]
    row["seq"] = item["seq"]
    row["unread"] = sum(1 for kept in row["items"] if not kept["read"])


def mark_read(row: Row | None, user_id: str, note_id: str, partition: int) -> Row:
    """Return the row with notification ``note_id`` read (unknown ids change nothing)."""
    new = _row(row, user_id, partition)
    new["items"] = [{**item, "read": True} if item["id"] == note_id else item
                    for item in new["items"]]
    new["unread"] = sum(1 for item in new["items"] if not item["read"])
    return new


def set_preferences(row: Row | None, user_id: str, marketing: bool, digest: bool,
                    partition: int) -> Row:
    """Return the row with the user's chosen preferences."""
    new = _row(row, user_id, partition)
    new["prefs"] = {"marketing": marketing, "digest": digest}
    return new


def set_contact(row: Row | None, user_id: str, name: str, email: str, partition: int) -> Row:
    """Return the row with the user's name (and e-mail, when given)."""
    new = _row(row, user_id, partition)
    new["name"] = name or new["name"]
    new["email"] = email or new["email"]
    return new


def _may_mail(row: Row | None, kind: str) -> bool:
    """Return True if the row's user gets optional mail of ``kind`` (promotion, digest)."""
    if not row or not row.get("email"):
        return False
    return bool(preferences(row)[MARKETING_MAIL[kind]])


def promotion_mail(row: Row | None, broadcast: PromotionBroadcast) -> Mail | None:
    """Return the promotion mail for the row's user, or None (opted out, no address)."""
    if not _may_mail(row, "promotion"):
        return None
    assert row is not None
    return Mail(notification_id(f"{broadcast.source_id}:{row['user_id']}", "promotion"),
                "promotion", row["email"], row.get("name", ""),
                {"code": broadcast.code, "title": broadcast.title, "body": broadcast.body})


def digest_mail(row: Row | None, broadcast: DigestBroadcast) -> Mail | None:
    """Return the weekly digest for the row's user, or None (opted out, nothing unread)."""
    if not _may_mail(row, "digest"):
        return None
    assert row is not None
    unread = [item for item in row.get("items", ()) if not item["read"]]
    if not unread:
        return None
    lines = [f"- {item['title']}: {item['body']}" for item in reversed(unread[-10:])]
    return Mail(notification_id(f"digest:{broadcast.week}:{row['user_id']}", "digest"),
                "digest", row["email"], row.get("name", ""),
                {"week": broadcast.week, "unread": len(unread), "lines": "\n".join(lines)})


def public_item(item: dict[str, Any]) -> dict[str, Any]:
    """Return a notification as the API shows it."""
    return {k: item.get(k) for k in ("id", "seq", "kind", "title", "body", "link",
                                     "created_at", "read")}


def newer_than(row: Row | None, seq: int) -> list[dict[str, Any]]:
    """Return the row's notifications numbered above ``seq``, oldest first."""
    return [item for item in (row or {}).get("items", ()) if item["seq"] > seq]
