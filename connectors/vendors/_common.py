"""What the DingTalk, WeCom and Feishu presets share: an app-token API client and the org walk.

The three Chinese office suites have the same shape of contacts API: an app exchanges its key
and secret for a two-hour access token, every answer is JSON with an in-band error code
(`errcode` for DingTalk and WeCom, `code` for Feishu; 0 is success, often with HTTP 200 for
failures too), some codes mean "token expired, fetch a new one", some "rate limited, wait", and
the org chart is read department by department. `VendorConnector` does that once:

* `call()` sends one API request with the cached token, decodes the answer, and acts on the
  vendor code: token codes refresh the token and retry the call once, rate-limit codes back off
  (1 s, 2 s, 4 s … up to `retries.backoff_max`, at most `retries.max_attempts` tries in all,
  through the injectable `sleep` so tests never really wait) and retry, quota codes stop with
  error_class "quota", known permission codes are "auth" errors with a hint, anything else is
  an error naming the code and the vendor's message. Transport failures, 429 and 5xx are
  retried by the shared `HttpSession` first.
* `read()` streams org units, then staff department by department, de-duplicating users who
  are listed under several departments (kept: a set of user ids, not the users).

Vendor records pass through unchanged so the builtin mappings (mappings/builtin/<vendor>.yaml)
can read the vendor's own field names, plus one field the connector derives:
`_kind` on org units — "company" for the root department, "department" for every other
(DESIGN.md: company → department → team; the vendors do not say which is which).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import requests
from marshmallow import fields, validate

from connectors.base import BaseSourceSchema, Connector, Page, SourceError
from connectors.http import (
    MISSING,
    HttpOptionsSchema,
    HttpSession,
    body_snippet,
    build_session,
    get_path,
    parse_json,
    safe_url,
)

# The kinds a contacts API can feed.
VENDOR_KINDS = ("org_units", "staff")
# What the walk hooks yield: one answer's records and facts about it for Page.info.
RawPage = tuple[list[dict[str, Any]], dict[str, Any]]
# Rate limits of these vendors are per second or per minute windows: wait at least this long.
RATE_LIMIT_MIN_WAIT = 1.0


def base_url_field(default: str) -> fields.Url:
    """`base_url`: the vendor's public endpoint unless overridden (tests, intranet proxies)."""
    return fields.Url(load_default=default, require_tld=False)


class VendorSourceSchema(BaseSourceSchema, HttpOptionsSchema):
    """Keys every vendor preset shares; each preset adds its credentials and `base_url`.
    Contacts APIs have departments and users only."""

    provided_kinds = VENDOR_KINDS


def page_size_field(maximum: int) -> fields.Integer:
    """`page_size`: users per request, up to the vendor's documented maximum (the default)."""
    return fields.Integer(load_default=maximum, validate=validate.Range(min=1, max=maximum))


class VendorConnector(Connector):
    """Base of the app-token presets. Subclasses fill in the class constants and the hooks
    `_fetch_token`, `_authorize`, `_org_pages`, `_department_id` and `_users_of`."""

    vendor: ClassVar[str] = ""  # the name users know, for messages
    code_key: ClassVar[str] = "errcode"  # where the answer's error code is
    message_key: ClassVar[str] = "errmsg"
    token_codes: ClassVar[frozenset[int]] = frozenset()  # token invalid / expired: refresh once
    rate_codes: ClassVar[frozenset[int]] = frozenset()  # busy / rate limited: back off, retry
    # Codes that mean the credentials lack a permission, with what to do about it.
    auth_hints: ClassVar[Mapping[int, str]] = {}
    # Appended to protocol errors: what a non-JSON or code-less answer usually means.
    block_hint: ClassVar[str] = ""
    user_id_key: ClassVar[str] = "userid"  # the vendor-wide user id, for de-duplication
    read_ahead: ClassVar[bool] = True  # HTTP only (connectors.base.Connector.read_ahead)

    # Injectable for tests: the back-off sleep (None = time.sleep) and the token clock.
    sleep: Callable[[float], None] | None = None
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, name: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)
        self._session: HttpSession | None = None
        self._token: str | None = None
        self._token_expires_at = 0.0
        # Department ids in walk order (root first), kept after a complete org_units read so the
        # staff read that follows in the same run need not walk the tree again.
        self._department_ids: list[str] | None = None

    # -- plumbing --------------------------------------------------------------------------

    @property
    def session(self) -> HttpSession:
        if self._session is None:
            self._session = build_session(self.config, source=self.name, sleep=self._sleep)
        return self._session

    def _sleep(self, seconds: float) -> None:
        (time.sleep if self.sleep is None else self.sleep)(seconds)

    def url(self, path: str) -> str:
        return self.config["base_url"].rstrip("/") + path

    def _access_token(self) -> str:
        if self._token is None or self.clock() >= self._token_expires_at:
            token, expires_in = self._fetch_token()
            self._token = token
            # Renew a minute early so a token does not expire between check and use.
            self._token_expires_at = self.clock() + max(0.0, expires_in - 60.0)
        return self._token

    def token_call(self, method: str, path: str, token_path: str, expires_path: str,
                   **kwargs: Any) -> tuple[str, float]:
        """Fetch an app token: (token, lifetime in seconds). Any refusal is an auth error."""
        body = self.call(method, path, what="token request", authenticate=False, **kwargs)
        token = get_path(body, token_path, None)
        if not isinstance(token, str) or not token:
            raise SourceError(f"{self.vendor} token request answered without {token_path!r}",
                              error_class="auth", source=self.name)
        try:
            lifetime = float(get_path(body, expires_path, 7200))
        except (TypeError, ValueError):
            lifetime = 7200.0  # the documented lifetime of all three vendors' tokens
        return token, lifetime

    def call(self, method: str, path: str, *, what: str, authenticate: bool = True,
             **kwargs: Any) -> dict[str, Any]:
        """One API call; the decoded answer when its code is 0, else SourceError (see module
        docstring for what each kind of code does)."""
        url = self.url(path)
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            request = dict(kwargs)
            if authenticate:
                self._authorize(request, self._access_token())
            response = self.session.request(method, url, raise_for_status=False, **request)
            body = self._decode(response, what)
            code = body.get(self.code_key, MISSING)
            if code == 0:
                return body
            message = str(body.get(self.message_key) or "")[:200]
            if code in self.token_codes and authenticate and not refreshed:
                # Expired or revoked early (another process fetched a new one): once more.
                refreshed, self._token = True, None
                attempt -= 1
                continue
            if code in self.rate_codes and attempt < self.session.settings.max_attempts:
                self._sleep(self._rate_limit_wait(attempt))
                continue
            raise self._code_error(code, message, what, url, attempt, authenticate)

    def _rate_limit_wait(self, attempt: int) -> float:
        settings = self.session.settings
        return min(settings.backoff_max,
                   max(RATE_LIMIT_MIN_WAIT, settings.backoff) * 2 ** (attempt - 1))

    def _decode(self, response: requests.Response, what: str) -> dict[str, Any]:
        """The JSON object of an answer that carries the vendor's code, else SourceError."""
        where = safe_url(response.url or "")
        try:
            body = parse_json(response, source=self.name)
        except SourceError as exc:
            if response.status_code >= 400:
                # No JSON to explain it: the status is all there is.
                exc.message = f"HTTP {response.status_code} from {where} ({what}): {exc.message}"
                exc.error_class = "auth" if response.status_code in (401, 403) else "http"
            elif self.block_hint:
                exc.message += f"; {self.block_hint}"
            raise
        if not isinstance(body, dict) or self.code_key not in body:
            keys = sorted(body)[:10] if isinstance(body, dict) else type(body).__name__
            raise SourceError(
                f"{where} ({what}) answered without {self.code_key!r} (it has {keys})"
                + (f"; {self.block_hint}" if self.block_hint else ""),
                error_class="protocol", source=self.name,
                detail={"url": where, "status": response.status_code,
                        "body": body_snippet(response.text or "")})
        return body

    def _code_error(self, code: Any, message: str, what: str, url: str, attempts: int,
                    authenticate: bool) -> SourceError:
        where = safe_url(url)
        detail = {"code": code, "url": where, "attempts": attempts}
        said = f"{self.code_key} {code}: {message}" if message else f"{self.code_key} {code}"
        quota = self._quota_message(code)
        if quota:
            return SourceError(f"{quota} ({said})", error_class="quota", source=self.name,
                               detail=detail)
        if not authenticate:
            return SourceError(f"{self.vendor} refused the app credentials ({said}); check them",
                               error_class="auth", source=self.name, detail=detail)
        if code in self.token_codes:
            return SourceError(f"{self.vendor} refused a freshly fetched token ({said})",
                               error_class="auth", source=self.name, detail=detail)
        if code in self.rate_codes:
            return SourceError(f"{self.vendor} still rate limits {what} after {attempts} attempts "
                               f"({said}); try again later", error_class="http", retryable=True,
                               source=self.name, detail=detail)
        if code in self.auth_hints:
            return SourceError(f"{self.vendor} denied {what} ({said}): {self.auth_hints[code]}",
                               error_class="auth", source=self.name, detail=detail)
        return SourceError(f"{self.vendor} {what} failed at {where} ({said})", error_class="http",
                           source=self.name, detail=detail)

    def _quota_message(self, code: Any) -> str:
        """The message for a code that means a quota is used up, or "" (no such code)."""
        return ""

    # -- vendor hooks ----------------------------------------------------------------------

    def _fetch_token(self) -> tuple[str, float]:
        """A new access token and its lifetime in seconds (use `token_call`)."""
        raise NotImplementedError

    def _authorize(self, request: dict[str, Any], token: str) -> None:
        """Put `token` into the keyword arguments of a request."""
        raise NotImplementedError

    def _org_pages(self) -> Iterator[RawPage]:
        """(departments, page info) in walk order, root first; the root record carries
        `_kind: company`, every other `_kind: department`."""
        raise NotImplementedError

    def _department_id(self, department: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def _users_of(self, department_id: str) -> Iterator[RawPage]:
        """(users, page info) for the users directly in one department, page by page."""
        raise NotImplementedError

    # -- the connector ---------------------------------------------------------------------

    def read(self, kind: str, *, since: str | None = None) -> Iterator[Page]:
        try:
            if kind == "org_units":
                yield from self._read_org_units()
            elif kind == "staff":
                yield from self._read_staff()
            else:
                raise SourceError(f"{self.vendor} contacts have no {kind}", error_class="config")
        except SourceError as exc:
            exc.source = exc.source or self.name
            exc.kind = exc.kind or kind
            raise

    def _read_org_units(self) -> Iterator[Page]:
        ids: list[str] = []
        for departments, info in self._org_pages():
            ids.extend(self._id_of(d) for d in departments)
            if departments:
                yield Page(departments, None, info)
        self._department_ids = ids

    def _walk_ids(self) -> Iterator[str]:
        if self._department_ids is not None:
            yield from self._department_ids
            return
        for departments, _ in self._org_pages():
            yield from (self._id_of(d) for d in departments)

    def _read_staff(self) -> Iterator[Page]:
        # A user listed under several departments is kept once, the first time seen; which of
        # their departments becomes org_unit_code is the mapping's business (main department).
        seen: set[str] = set()
        for department_id in _unique(self._walk_ids()):
            for users, info in self._users_of(department_id):
                fresh = []
                for user in users:
                    user_id = str(user.get(self.user_id_key) or "")
                    if user_id and user_id in seen:
                        continue
                    seen.add(user_id)
                    fresh.append(user)
                if fresh:
                    yield Page(fresh, None, info)

    def _id_of(self, department: Mapping[str, Any]) -> str:
        try:
            return self._department_id(department)
        except KeyError as exc:
            raise SourceError(f"{self.vendor} listed a department without {exc.args[0]!r}",
                              error_class="protocol") from None

    def check(self) -> None:
        self._access_token()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _unique(items: Iterable[str]) -> Iterator[str]:
    """`items` without repeats, in order: a department listed twice is read once."""
    seen: set[str] = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            yield item


def records_at(body: Mapping[str, Any], path: str, what: str) -> list[dict[str, Any]]:
    """The list of objects at `path` in a vendor answer (null or absent → empty, as the vendors
    omit empty lists), or a protocol error when something else is there."""
    value = get_path(body, path, None)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise SourceError(f"{what}: {path!r} is not a list of objects", error_class="protocol")
    return value


def next_cursor(body: Mapping[str, Any], has_more_path: str, cursor_path: str, seen: set[Any],
                what: str) -> Any:
    """The cursor of the next page, or None when `has_more_path` says this was the last.

    A missing cursor after "has more", or a cursor seen before (which would loop forever), is
    a protocol error: stopping quietly would yield a partial pull as if it were whole.
    """
    if not get_path(body, has_more_path, False):
        return None
    cursor = get_path(body, cursor_path, None)
    if cursor in (None, ""):
        raise SourceError(f"{what}: {has_more_path!r} says more pages follow but "
                          f"{cursor_path!r} is empty", error_class="protocol")
    if cursor in seen:
        raise SourceError(f"{what}: the same cursor {cursor!r} came twice; it would loop forever",
                          error_class="protocol")
    seen.add(cursor)
    return cursor
