"""Pure parsing of what a request carries: IDs, list limits, opaque cursors, JSON bodies.

Every mistake becomes an ``ApiError`` with its status and one sentence, so a
route never turns a client's typo into a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from hpclaunch.validate import API_PAGE_MAX, ID_MAX

DEFAULT_LIMIT = 100
MAX_LIMIT = API_PAGE_MAX
_ID = re.compile(r"[0-9]{1,19}")
_KEY = re.compile(r"[A-Za-z0-9._:+-]{1,64}")  # a launch ID
_MAX_CURSOR = 400


def printable(message: str) -> str:
    """A message that encodes as UTF-8 whatever it quotes (lone surrogates escaped)."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


class ApiError(Exception):
    """A reply the client caused: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def row_id(text: str, what: str) -> int:
    """A path's row ID; anything that cannot be one is simply not found."""
    if not _ID.fullmatch(text) or not 1 <= int(text) <= ID_MAX:
        raise ApiError(404, f"no {what} with ID {text[:40]!r}")
    return int(text)


def key_id(text: str, what: str) -> str:
    """A path's text ID (a launch's); anything that cannot be one is not found."""
    if not _KEY.fullmatch(text):
        raise ApiError(404, f"no {what} {text[:40]!r}")
    return text


def limit(value: str | None) -> int:
    """``limit``: default 100, at most 1,000."""
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def flag(value: str | None, name: str) -> bool:
    """A boolean query parameter: true/false, 1/0, yes/no."""
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ApiError(400, f"{name} must be true or false")


def encode_cursor(after: int | str) -> str:
    """An opaque cursor: the last row's key, so the next page starts after it."""
    raw = json.dumps({"after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | None, kind: type[int] | type[str] = int) -> Any:
    """The key a cursor from ``encode_cursor`` carries, or None for the first page."""
    if value is None:
        return None
    bad = ApiError(400, "cursor is not one this server gave out; start again without it")
    if len(value) > _MAX_CURSOR:
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    after = data.get("after") if isinstance(data, dict) else None
    if kind is int and (
        isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= ID_MAX
    ):
        raise bad
    if kind is str and (not isinstance(after, str) or not _KEY.fullmatch(after)):
        raise bad
    return after


def page(rows: list[dict[str, Any]], size: int, key: str = "id") -> dict[str, Any]:
    """A list reply from ``size + 1`` rows: the first ``size`` and the cursor to the rest."""
    more = len(rows) > size
    rows = rows[:size]
    return {"items": rows, "next_cursor": encode_cursor(rows[-1][key]) if more else None}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object (strict JSON: no NaN or Infinity)."""
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not JSON ({exc.msg} at {exc.pos})") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the request body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    storable(data)
    return data


def storable(value: Any, depth: int = 0) -> None:
    """Refuse what no database column or JSON reply can hold: NUL characters, NaN and
    infinities, nesting deeper than 100."""
    if depth > 100:
        raise ApiError(422, "the request nests deeper than 100 levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ApiError(422, "text in the request must not contain NUL characters")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(422, "text in the request is not valid Unicode") from None
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ApiError(422, "numbers in the request must be finite (no NaN or infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key, depth + 1)
            storable(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            storable(item, depth + 1)
