"""web/operations.py and web/analytics.py served by the real app's web stack, without Kafka.

``await app.web.wsgi()`` returns the aiohttp application with the app's middlewares, views
and blueprints (Faust's index page and /metrics). Three facts shape this module:
- views exist only once their module is imported (``@app.page`` registers at import; the
  worker's autodiscovery does not run here), so ``app.discover()`` comes first;
- once served, the router is frozen: importing a view module later raises RuntimeError;
- ``app.web`` is cached, so every ``wsgi()`` returns the same Application, and an aiohttp
  Application serves only on the first event loop it ran on. So: one module-scoped fixture on a
  module-scoped event loop.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from unittest.mock import AsyncMock, patch

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from agents.topics import analytics_topic
from app import app
from models.analytics import Tracked, tracked_items
from models.base import event_from_data, json_object
from web.analytics import MAX_BATCH
from web.middleware import SERVED_BY

pytestmark = pytest.mark.asyncio(loop_scope="module")

SESSION = "sess-0001abcd"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client() -> AsyncIterator[TestClient]:
    app.discover()  # import every layer's views, as `faust worker` does
    aio = await app.web.wsgi()
    async with TestClient(TestServer(aio)) as client:
        yield client


@pytest.fixture
def sent() -> Iterator[AsyncMock]:
    """Replace the analytics producer; its send returns a delivered future, like Faust's."""

    async def send(*, key: str, value: bytes) -> asyncio.Future[None]:
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    with patch.object(analytics_topic, "send", new=AsyncMock(side_effect=send)) as mock, \
            patch.object(analytics_topic, "maybe_declare", new=AsyncMock()):
        yield mock


def sent_events(sent: AsyncMock) -> list[Tracked]:
    """The events of the packs sent (agents/tracking.py), in order."""
    return [event_from_data(Tracked, item) for call in sent.await_args_list
            for item in tracked_items(json_object(call.kwargs["value"]))]


async def error_of(response: Any) -> dict[str, Any]:
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return dict(body["error"])


async def test_health_answers_ok_and_names_the_worker(client: TestClient) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    assert response.headers[SERVED_BY] == app.settings.canonical_url


async def test_ready_is_503_until_kafka_and_rabbitmq_are_ready(client: TestClient) -> None:
    response = await client.get("/ready")
    assert response.status == 503
    body = await response.json()
    assert body["ready"] is False
    assert body["kafka"]["ready"] is False
    assert body["kafka"]["rebalancing"] is False
    assert body["rabbitmq"] == {"ready": False, "error": None, "outbox_depth": 0, "pending": 0}


async def test_an_unknown_route_is_the_json_404(client: TestClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status == 404
    assert await error_of(response) == {
        "code": "not_found", "message": "no route for /api/nothing-here", "details": None,
    }
    assert response.headers[SERVED_BY] == app.settings.canonical_url


async def test_a_wrong_method_is_the_json_405(client: TestClient) -> None:
    response = await client.get("/api/events")
    assert response.status == 405
    assert "POST" in response.headers["Allow"].split(",")
    assert (await error_of(response))["code"] == "method_not_allowed"


async def test_metrics_are_served(client: TestClient) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert "shop_dead_letters_total" in text
    assert "shop_replays_skipped_total" in text


async def test_tracking_a_body_that_is_not_json_is_a_400(
    client: TestClient, sent: AsyncMock,
) -> None:
    response = await client.post("/api/events", data=b"session=1",
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400
    error = await error_of(response)
    assert error["code"] == "bad_request"
    assert "not valid JSON" in error["message"]
    assert sent.await_count == 0


@pytest.mark.parametrize(("body", "fields"), [
    ({"events": [{"type": "page_view"}]}, {"session_id"}),
    ({"session_id": "short", "events": [{"type": "page_view"}]}, {"session_id"}),
    ({"session_id": "has spaces in it", "events": [{"type": "page_view"}]}, {"session_id"}),
    ({"session_id": SESSION}, {"events"}),
    ({"session_id": SESSION, "events": []}, {"events"}),
    ({"session_id": SESSION, "events": [{"type": "page_view"}] * (MAX_BATCH + 1)}, {"events"}),
    ({"session_id": SESSION, "events": [{"type": "purchase"}]}, {"events.0.type"}),
    ({"session_id": SESSION, "events": [{"type": "search", "at": "2024-05-01T10:00:00"}]},
     {"events.0.at"}),
    ({"session_id": SESSION, "events": [{"type": "search", "query": "q" * 201}]},
     {"events.0.query"}),
], ids=["no-session", "short-session", "bad-session-chars", "no-events", "empty-events",
        "too-many-events", "unknown-type", "naive-time", "long-query"])
async def test_tracking_an_invalid_batch_is_a_422_naming_the_fields(
    client: TestClient, sent: AsyncMock, body: dict[str, Any], fields: set[str],
) -> None:
    response = await client.post("/api/events", json=body)
    assert response.status == 422
    error = await error_of(response)
    assert error["code"] == "invalid"
    assert {detail["field"] for detail in error["details"]} == fields
    assert sent.await_count == 0


async def test_tracking_a_body_over_the_size_limit_is_a_413(
    client: TestClient, sent: AsyncMock,
) -> None:
    # A file-like body: aiohttp warns (ResourceWarning, an error here) about large raw bytes.
    response = await client.post("/api/events", data=io.BytesIO(b" " * (1024 * 1024 + 1)),
                                 headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert (await error_of(response))["code"] == "payload_too_large"


async def test_a_tracked_batch_goes_to_the_analytics_topic(
    client: TestClient, sent: AsyncMock,
) -> None:
    past = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    future = datetime.now(UTC) + timedelta(days=365)
    body = {"session_id": SESSION, "events": [
        {"type": "product_view", "sku": "sku-1", "at": past.isoformat()},
        {"type": "search", "query": "red shoes", "at": future.isoformat()},
        {"type": "page_view", "path": "/cart"},
    ]}
    before = datetime.now(UTC)
    response = await client.post("/api/events", json=body, headers={"X-Request-Id": "req-7"})
    after = datetime.now(UTC)

    assert response.status == 202
    assert await response.json() == {"accepted": 3}
    assert [call.kwargs["key"] for call in sent.await_args_list] == [SESSION]
    viewed, searched, paged = sent_events(sent)
    assert (viewed.type, viewed.sku, viewed.occurred_at) == ("product_view", "sku-1", past)
    assert (searched.type, searched.query) == ("search", "red shoes")
    assert before <= searched.occurred_at <= after, "a time in the future is clamped to now"
    assert (paged.type, paged.path) == ("page_view", "/cart")
    assert before <= paged.occurred_at <= after
    events = (viewed, searched, paged)
    assert {e.session_id for e in events} == {SESSION}
    assert {e.correlation_id for e in events} == {"req-7"}
    assert len({e.event_id for e in events}) == 3


async def test_every_accepted_event_can_be_decoded_by_the_agent(
    client: TestClient, sent: AsyncMock,
) -> None:
    body = {"session_id": SESSION, "events": [{"type": "search", "query": ""}]}
    response = await client.post("/api/events", json=body)
    assert response.status in (202, 422)
    if response.status == 202:
        assert [e.query for e in sent_events(sent)] in ([""], [None])


async def test_event_times_are_stored_in_utc(client: TestClient, sent: AsyncMock) -> None:
    body = {"session_id": SESSION,
            "events": [{"type": "page_view", "at": "2024-05-01T12:00:00+02:00"}]}
    response = await client.post("/api/events", json=body)
    assert response.status == 202
    value = json.loads(sent.await_args_list[0].kwargs["value"])["events"][0]
    assert value["occurred_at"] in ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00+00:00")


async def test_a_method_a_view_lacks_gets_the_error_shape_and_allow(client: TestClient) -> None:
    response = await client.put("/api/events", json={})
    assert response.status == 405
    assert (await error_of(response))["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


async def test_a_keyed_read_without_kafka_is_unavailable_not_an_error(
    client: TestClient,
) -> None:
    # Without Kafka no worker owns the key: the router answers 503 with Retry-After.
    response = await client.get("/api/analytics/sessions/no-such-session")
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert (await error_of(response))["code"] == "unavailable"


async def test_a_shop_view_answers_json_as_faust_encodes_it(client: TestClient) -> None:
    from faust.utils import json as faust_json

    from web.views import ShopView

    value = {"at": datetime(2024, 5, 1, 10, tzinfo=UTC), "n": [1, 2], "s": "é"}
    response = cast(Any, ShopView).json(object.__new__(ShopView), value, status=201)
    assert response.status == 201
    assert response.content_type == "application/json" and response.charset == "utf-8"
    assert response.text == faust_json.dumps(value)


async def test_a_row_not_found_before_the_tables_are_restored_is_a_503(
        client: TestClient) -> None:
    """This worker never recovered its tables: a missing row may exist, so no 404."""
    response = await client.get("/api/products/no-such-sku")
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    error = await error_of(response)
    assert error["code"] == "unavailable"
    assert "restoring" in error["message"]


async def test_an_answer_of_encoded_bytes_is_the_json_answer_of_the_value() -> None:
    from web.views import ShopView, json_bytes

    value = {"id": "o-1", "at": datetime(2024, 1, 2, tzinfo=UTC), "name": "Zoë", "n": [1, 2.5]}
    made = ShopView.json(cast(Any, None), value)
    given = ShopView.json_bytes(cast(Any, None), json_bytes(value))
    assert given.body == made.body and given.status == made.status == 200
    assert dict(given.headers) == dict(made.headers)
    assert given.content_type == "application/json" and given.charset == "utf-8"
