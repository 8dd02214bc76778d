"""Turn pydantic validation errors into one UsageError that names every bad field."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from .errors import UsageError

M = TypeVar("M", bound=BaseModel)


def describe(exc: ValidationError, what: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg'].removeprefix('Value error, ')}")
    return f"invalid {what}:\n" + "\n".join(lines)


def build(model: type[M], data: dict[str, object], what: str, error: type[UsageError] = UsageError) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(describe(exc, what)) from None
