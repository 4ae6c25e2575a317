"""schemathesis against ``/api/openapi.json`` on a running worker: no 5xx, answers as documented.

One real worker (real Tansu, real RabbitMQ); a product, a registered customer with an order,
and the first admin (logged in for real, so ``/api/users/me`` finds their rows). Every
operation of the served document is then fuzzed as anonymous, as the customer and as the
admin, with valid (positive) and invalid (negative) inputs; read operations with path
parameters are fuzzed again with the names of the resources that exist. Every answer is
checked: not a 5xx, a status the document lists, a body that matches its schema. Failures
are collected and reported together (operation, caller, status, check, a curl line).

Bounded: a few examples per operation and caller, derandomized (the same cases every run).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from agents.users import admin_user_id
from scripts.devstack import Worker
from tests.integration.fixtures import WorkerFactory

pytestmark = pytest.mark.integration

ADMIN_EMAIL, ADMIN_PASSWORD = "root@shop.example", "schema admin password"
CUSTOMER_EMAIL, CUSTOMER_PASSWORD = "fuzz@example.com", "schema customer password"
SKU = "FUZZ-1"
SESSION = "fuzz-session-1"
SETTINGS = {"SHOP_PASSWORD_HASH_COST": "light", "SHOP_RATE_LIMIT": "100000",
            "SHOP_RATE_BURST": "100000", "SHOP_ADMIN_EMAIL": ADMIN_EMAIL,
            "SHOP_ADMIN_PASSWORD": ADMIN_PASSWORD}
#: Examples per operation, caller and generation mode.
EXAMPLES = 8
#: Operations fuzzed last, as they spoil the caller's session (a new password, a logout).
LAST = ("PATCH /api/users/me", "POST /api/auth/logout")
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
TIMEOUT_S = 20.0
#: The ``?wait=`` of valid cases (invalid ones are refused at once).
WAIT_S = 0.05


@dataclass(frozen=True)
class Found:
    """One failed check: where, as whom, what the server answered and how to reproduce it."""

    operation: str
    caller: str
    status: int
    checks: str
    curl: str

    def __str__(self) -> str:
        return f"{self.operation} as {self.caller}: {self.status}: {self.checks}\n  {self.curl}"


def wait_until(predicate: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Poll ``predicate`` until it holds, or fail naming ``what``."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within:.0f} s")
        time.sleep(0.2)


def login(http: requests.Session, worker: Worker, email: str, password: str) -> dict[str, str]:
    """Log in; return the bearer header."""
    answer = http.post(worker.url + "/api/auth/login",
                       json={"email": email, "password": password}, timeout=TIMEOUT_S)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def prepare(http: requests.Session, worker: Worker) -> tuple[dict[str, dict[str, str]],
                                                              dict[str, str]]:
    """Create the resources; return each caller's headers and the names of what exists."""
    wait_until(lambda: http.post(worker.url + "/api/auth/login", timeout=TIMEOUT_S, json={
        "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).status_code == 200,
        "the first admin's registration")
    admin = login(http, worker, ADMIN_EMAIL, ADMIN_PASSWORD)
    answer = http.post(worker.url + "/api/products", headers=admin, timeout=TIMEOUT_S, json={
        "sku": SKU, "name": "Fuzzed", "category": "books", "price_cents": 500,
        "initial_stock": 100})
    assert answer.status_code == 201, answer.text
    wait_until(lambda: http.get(f"{worker.url}/api/products/{SKU}",
                                timeout=TIMEOUT_S).status_code == 200, "the product")
    answer = http.post(worker.url + "/api/users", timeout=TIMEOUT_S, json={
        "email": CUSTOMER_EMAIL, "password": CUSTOMER_PASSWORD, "name": "Fuzz"})
    assert answer.status_code == 201, answer.text
    customer_id = answer.json()["id"]
    customer = login(http, worker, CUSTOMER_EMAIL, CUSTOMER_PASSWORD)
    answer = http.post(worker.url + "/api/orders", timeout=TIMEOUT_S,
                       headers={**customer, "Idempotency-Key": "fuzz-1"},
                       json={"items": [{"sku": SKU, "quantity": 1}],
                             "payment_method": "pm_card_ok"})
    assert answer.status_code == 201, answer.text
    order_id = answer.json()["id"]
    answer = http.post(worker.url + "/api/events", timeout=TIMEOUT_S, json={
        "session_id": SESSION, "events": [{"type": "page_view", "path": "/"}]})
    assert answer.status_code == 202, answer.text
    callers = {"anonymous": {}, "customer": customer, "admin": admin}
    known = {"sku": SKU, "order_id": order_id, "user_id": customer_id, "session_id": SESSION}
    assert admin_user_id(ADMIN_EMAIL)  # the admin is a real user with rows
    return callers, known


def fuzz(case_strategy: st.SearchStrategy[Case], run: Callable[[Case], None]) -> None:
    """Run ``run`` on a few derandomized cases of ``case_strategy`` (no shrinking)."""

    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                         database=None, phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))
    @given(case=case_strategy)
    def each(case: Case) -> None:
        run(case)

    each()


def checker(http: requests.Session, base_url: str, operation: str, caller: str,
            headers: dict[str, str], found: list[Found]) -> Callable[[Case], None]:
    """Return what calls and checks one case, noting failures in ``found``."""

    def run(case: Case) -> None:
        response = case.call(base_url=base_url, session=http, headers=headers,
                             timeout=TIMEOUT_S)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (FailureGroup, Failure) as exc:
            failures = exc.exceptions if isinstance(exc, FailureGroup) else (exc,)
            checks = "; ".join(f"{f.title}: {f.message.strip()[:300]}" for f in failures)
            curl = case.as_curl_command(headers=headers, base_url=base_url)
            found.append(Found(operation, caller, response.status_code, checks, curl))

    return run


def fixed_waits(operation: Any) -> dict[str, Any] | None:
    """Return a short fixed ``?wait=`` where the operation has one (a wait on a missing order
    lasts all of it), else None."""
    names = {parameter.name for parameter in operation.query}
    return {"wait": WAIT_S} if "wait" in names else None


def ordered(schema: Any) -> list[Any]:
    """Return the schema's operations, those that spoil a session last."""
    operations = [result.ok() for result in schema.get_all_operations()]
    return sorted(operations, key=lambda op: (
        f"{op.method.upper()} {op.path}" in LAST, op.path, op.method))


def test_the_api_answers_as_its_openapi_document_says(workers: WorkerFactory) -> None:
    worker = workers.start("fuzzed", **SETTINGS)
    worker.wait_ready(timeout=60)
    started = time.monotonic()
    found: list[Found] = []
    calls = 0
    with requests.Session() as http:
        callers, known = prepare(http, worker)
        # The served document, through from_dict: from_url leaves out the operation that
        # serves the document itself, and GET /api/openapi.json is fuzzed like the others.
        served = http.get(worker.url + "/api/openapi.json", timeout=TIMEOUT_S)
        assert served.status_code == 200, served.text
        schema = schemathesis.openapi.from_dict(served.json())
        operations = ordered(schema)
        assert len(operations) >= 24, sorted(op.label for op in operations)
        for caller, headers in callers.items():
            for operation in operations:
                label = f"{operation.method.upper()} {operation.path}"
                run = checker(http, worker.url, label, caller, headers, found)

                def counted(case: Case, run: Callable[[Case], None] = run) -> None:
                    nonlocal calls
                    calls += 1
                    run(case)

                short = fixed_waits(operation)
                fuzz(operation.as_strategy(query=short), counted)
                with contextlib.suppress(Unsatisfiable):  # nothing to make invalid
                    # the wait stays short here too: an invalid header or an unknown query
                    # parameter leaves a valid ?wait= to run its course
                    fuzz(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE,
                                               query=short), counted)
                names = {p: known[p] for p in known if "{" + p + "}" in operation.path}
                if names and operation.method.upper() == "GET":
                    fuzz(operation.as_strategy(path_parameters=names, query=short), counted)
    elapsed = time.monotonic() - started
    print(f"schemathesis: {calls} requests over {len(operations)} operations x "
          f"{len(callers)} callers in {elapsed:.1f} s; {len(found)} failures")
    unique = {(f.operation, f.caller, f.status, f.checks): f for f in found}
    assert not unique, "\n".join(str(f) for f in unique.values())
