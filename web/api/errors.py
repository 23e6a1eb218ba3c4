"""One JSON error shape for the whole API: `{"error": {"code", "message", "field"}}`.

flask-smorest registers its own handler for every HTTPException app-wide; `render_error` replaces
its payload for paths under /api/ and leaves the console's HTML errors alone. Validation errors
(webargs, 422) name the first offending field; 405 keeps `Allow`, 401 `WWW-Authenticate`, 429
`Retry-After`.
"""
from __future__ import annotations

from typing import Any, NoReturn

from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

API_PREFIXES = ("/api/",)

# Machine-readable codes per status, for when the raiser gives none.
DEFAULT_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 412: "precondition_failed",
    413: "too_large", 415: "unsupported_media_type", 422: "invalid", 428: "precondition_required",
    429: "rate_limited", 500: "internal_error",
}
# Headers an error may carry to the client; anything else the exception holds is dropped.
PASSED_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


class ApiError(HTTPException):
    """An HTTP error with the API's code, message, field and extra headers."""

    def __init__(self, status: int, message: str, code: str | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description=message)
        self.code = status
        self.data = {"message": message, "error_code": code, "field": field, "headers": headers or {}}


def fail(status: int, message: str, code: str | None = None, field: str | None = None,
         headers: dict[str, str] | None = None) -> NoReturn:
    raise ApiError(status, message, code, field, headers)


def _first_validation_error(messages: Any, path: tuple[str, ...] = ()) -> tuple[str | None, str]:
    """webargs nests messages as {location: {field: [msg]}}: the first field and its message."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            # The location level (query, json, view_args) is not part of the field name.
            inner = path if not path and key in ("query", "json", "form", "view_args", "headers", "path") else (*path, str(key))
            return _first_validation_error(value, inner)
    if isinstance(messages, list) and messages:
        if all(isinstance(m, str) for m in messages):
            field = ".".join(p for p in path if p != "_schema") or None
            return field, messages[0]
        return _first_validation_error(messages[0], path)
    return (".".join(path) or None), str(messages)


def error_body(code: str, message: str, field: str | None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def render_error(error: HTTPException) -> Response | HTTPException:
    """The API's JSON error for `error`; other paths and non-errors (redirects) pass through."""
    status = error.code or 500
    if status < 400 or not request.path.startswith(API_PREFIXES):
        return error
    data = getattr(error, "data", None) or {}
    field = data.get("field")
    message = data.get("message") if isinstance(data.get("message"), str) else None
    if "messages" in data:  # webargs validation
        field, first = _first_validation_error(data["messages"])
        message = f"{field}: {first}" if field else first
    if status >= 500:
        # Never a stack trace or an internal message to a client.
        message = "internal error; the operators can find it in the server log"
    if not message:
        message = error.description or error.name
    code = data.get("error_code") or DEFAULT_CODES.get(status, "error")
    response = jsonify(error_body(code, message, field))
    response.status_code = status
    headers = dict(data.get("headers") or {})
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(sorted(error.valid_methods))
    for name in PASSED_HEADERS:
        if name in headers:
            response.headers[name] = headers[name]
    return response
