"""Reading request bodies: JSON into a pydantic model, or a 4xx that says what to fix."""

from __future__ import annotations

import json
import math
import re
from typing import TypeVar, cast

from aiohttp import web
from faust.web import Request
from pydantic import BaseModel, ValidationError

from web.errors import ApiError, BadRequest

__all__ = ["UNSTORABLE", "Unprocessable", "read_body", "read_query"]

M = TypeVar("M", bound=BaseModel)


class Unprocessable(ApiError):
    """The JSON is well formed but its fields are invalid; details list each problem."""

    status = 422
    code = "invalid"


#: Characters no field stores or shows: the C0 controls but tab, newline and carriage return
#: (free text keeps those), and DEL.
UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _finite(text: str) -> float:
    """Parse a JSON number as a float, refusing one too large for a double (1e999)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def _loads(raw: str) -> object:
    return json.loads(raw, parse_float=_finite)


async def read_body(request: Request | web.Request, model: type[M]) -> M:
    """Return the request's JSON body validated as ``model``.

    Whatever JSON cannot be stored or shown is refused with a 4xx: a malformed document, an
    integer beyond Python's digit limit, a number beyond a double, text with control
    characters.
    """
    try:
        data = await cast(web.Request, request).json(loads=_loads)
    except RecursionError:
        raise BadRequest("the body is JSON nested too deeply") from None
    except ValueError as exc:  # JSON, UTF-8, the integer digit limit, a float overflow
        raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}") from None
    _refuse_unstorable(data, model.__name__, "the body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(f"the body is not a valid {model.__name__}",
                            details=_problems(exc)) from None


_NO_QUERY: dict[str, str] = {}


def _refuse_unstorable(data: object, model: str, what: str) -> None:
    """Raise Unprocessable naming every string (or key) of ``data`` with a control character."""
    problems = [{"field": field, "problem": "contains a control character"}
                for field in _unstorable_fields(data, ())]
    if problems:
        raise Unprocessable(f"{what} is not a valid {model}", details=problems)


def _unstorable_fields(data: object, path: tuple[str, ...]) -> list[str]:
    if isinstance(data, str):
        return [".".join(path) or "(value)"] if UNSTORABLE.search(data) else []
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if UNSTORABLE.search(key):
                found.append(".".join((*path, repr(key))))
            found += _unstorable_fields(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _unstorable_fields(value, (*path, str(index)))
    return found


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in exc.errors(include_url=False)]


def read_query(request: Request | web.Request, model: type[M]) -> M:
    """Return the request's query parameters validated as ``model``."""
    incoming = cast(web.Request, request)
    if not incoming.query_string:  # most reads: nothing to parse or look through
        return model.model_validate(_NO_QUERY)
    query = dict(incoming.query)
    _refuse_unstorable(query, model.__name__, "the query")
    try:
        return model.model_validate(query)
    except ValidationError as exc:
        raise Unprocessable(f"the query is not a valid {model.__name__}",
                            details=_problems(exc)) from None
