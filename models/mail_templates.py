"""Mail templates: a subject and a plain-text body per kind of mail, as small string templates.

``render(kind, name, values)`` fills a template with ``{name}`` and the mail's ``values``;
a placeholder without a value renders empty (a template never fails on a missing field).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TEMPLATES", "promotion_text", "render"]

#: kind -> (subject, body)
TEMPLATES: dict[str, tuple[str, str]] = {
    "receipt": (
        "Your ShopStream receipt: {title}",
        "Hello {name},\n\n{body}\n\nYour order: {link}\n\n"
        "Thank you for shopping with ShopStream.\n",
    ),
    "promotion": (
        "{title} with the code {code}",
        "Hello {name},\n\n{body}\n\nUse the code {code} at checkout.\n\n"
        "You get this mail because you accept promotions; turn them off in your "
        "notification preferences (marketing).\n",
    ),
    "digest": (
        "Your ShopStream week {week}: {unread} unread notifications",
        "Hello {name},\n\nWhat you have not read yet:\n\n{lines}\n\n"
        "Turn the weekly digest off in your notification preferences (digest).\n",
    ),
}


class _Values(dict[str, Any]):
    """Template values; a missing one renders empty."""

    def __missing__(self, key: str) -> str:
        return ""


def render(kind: str, name: str, values: dict[str, Any]) -> tuple[str, str]:
    """Return the subject and body of a ``kind`` mail to ``name`` with ``values``."""
    if kind not in TEMPLATES:
        raise ValueError(f"no mail template for {kind!r} (known: {', '.join(TEMPLATES)})")
    subject, body = TEMPLATES[kind]
    filled = _Values(values, name=name or "there")
    return subject.format_map(filled).replace("\n", " "), body.format_map(filled)


def promotion_text(promotion: dict[str, Any]) -> tuple[str, str]:
    """Return the title and text of a promotion's mail from its public document."""
    value = promotion.get("value", 0)
    off = f"{value}% off" if promotion.get("kind") == "percent" else (
        f"{int(value) // 100}.{int(value) % 100:02d} EUR off")
    categories = promotion.get("categories") or []
    where = f" on {', '.join(categories)}" if categories else ""
    until = f" until {promotion['ends_at']}" if promotion.get("ends_at") else ""
    return f"{off}{where}", f"A new promotion is live: {off}{where}{until}."
