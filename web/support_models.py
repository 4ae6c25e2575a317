"""Support HTTP bodies: what the support views accept and answer (also the OpenAPI schemas)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = [
    "AssignIn",
    "CommentIn",
    "CommentOut",
    "ResolveIn",
    "SlaOut",
    "StepOut",
    "TicketIn",
    "TicketOut",
    "TicketPage",
    "TicketSummary",
]

#: User ids an assignee may be (no parentheses: "(unassigned)" names the unassigned queue).
ASSIGNEE = r"^[A-Za-z0-9_.@:-]{1,128}$"


class TicketIn(BaseModel):
    """A new ticket; ``order_id`` must name one of the caller's own orders."""

    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=10_000)
    order_id: str | None = Field(default=None, min_length=1, max_length=64,
                                 pattern=r"^[A-Za-z0-9_-]+$")


class CommentIn(BaseModel):
    """A comment on a ticket."""

    body: str = Field(min_length=1, max_length=10_000)


class AssignIn(BaseModel):
    """Whom to assign the ticket to: a support or admin user id, or ``me``."""

    assignee: str = Field(pattern=ASSIGNEE)


class ResolveIn(BaseModel):
    """How the ticket was resolved."""

    resolution: str = Field(min_length=1, max_length=10_000)


class CommentOut(BaseModel):
    """One comment."""

    id: str
    author_id: str
    author_role: str
    body: str
    at: str


class StepOut(BaseModel):
    """One entry of a ticket's history."""

    action: str
    at: str
    by: str
    role: str
    event_id: str


class TicketOut(BaseModel):
    """A ticket with its comments and history."""

    id: str
    user_id: str
    subject: str
    body: str
    order_id: str | None = None
    status: str
    opened_at: str
    open_since: str
    assignee: str | None = None
    first_response_at: str | None = None
    resolved_at: str | None = None
    resolution: str | None = None
    comments: list[CommentOut]
    history: list[StepOut]


class TicketSummary(BaseModel):
    """A ticket in a list (no body, comments or history)."""

    id: str
    user_id: str
    subject: str
    status: str
    assignee: str | None = None
    order_id: str | None = None
    opened_at: str
    first_response_at: str | None = None
    resolved_at: str | None = None
    comments: int
    updated_at: str
    breached: bool


class TicketPage(BaseModel):
    """A page of tickets, newest first."""

    items: list[TicketSummary]
    total: int
    page: int
    per_page: int


class Durations(BaseModel):
    """Running figures of a duration (seconds; the median of the latest 100)."""

    count: int
    mean_s: float | None = None
    median_s: float | None = None
    max_s: float | None = None


class SlaOut(BaseModel):
    """Support SLA figures: first response, resolution, open tickets by age, workload."""

    first_response_target_s: float
    first_response: Durations
    resolution: Durations
    open: int
    open_by_age: dict[str, int]
    waiting_for_first_response: int
    breaching_now: int
    breaches: int
    workload: dict[str, int]
    at: str
