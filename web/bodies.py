"""Reading request bodies: JSON into a pydantic model, or a 4xx that says what to fix."""

from __future__ import annotations

import json
from typing import TypeVar, cast

from aiohttp import web
from faust.web import Request
from pydantic import BaseModel, ValidationError

from web.errors import ApiError, BadRequest

__all__ = ["Unprocessable", "read_body", "read_query"]

M = TypeVar("M", bound=BaseModel)


class Unprocessable(ApiError):
    """The JSON is well formed but its fields are invalid; details list each problem."""

    status = 422
    code = "invalid"


async def read_body(request: Request | web.Request, model: type[M]) -> M:
    """Return the request's JSON body validated as ``model``."""
    try:
        data = await cast(web.Request, request).json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the body is JSON nested too deeply") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(f"the body is not a valid {model.__name__}",
                            details=_problems(exc)) from None


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in exc.errors(include_url=False)]


def read_query(request: Request | web.Request, model: type[M]) -> M:
    """Return the request's query parameters validated as ``model``."""
    try:
        return model.model_validate(dict(cast(web.Request, request).query))
    except ValidationError as exc:
        raise Unprocessable(f"the query is not a valid {model.__name__}",
                            details=_problems(exc)) from None
