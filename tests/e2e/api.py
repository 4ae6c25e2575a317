"""Plain API calls for the browser tests (sync: Playwright's sync API owns the event loop)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call(base_url: str, method: str, path: str, *, headers: dict[str, str] | None = None,
         body: Any = None) -> tuple[int, Any]:
    """Return (status, JSON body) of one API request (plain urllib: the test is sync)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")

