"""The HTTP session every HTTP connector shares (generic REST now, vendor presets later).

`build_session(config)` turns the HTTP keys of a source block (`auth`, `headers`, `timeout`,
`retries`, `verify_tls`) into an `HttpSession`: a `requests.Session` that

* always sends a (connect, read) timeout, so a hung OA server cannot stall a run forever;
* retries connection errors, timeouts, 429 and 5xx with exponential backoff and jitter, honouring
  `Retry-After`, up to `retries.max_attempts` attempts in all;
* authenticates (none | basic | bearer | token_endpoint); a token from a token endpoint is cached
  until shortly before it expires and fetched anew once when the server answers 401;
* turns every failure into a `SourceError` with an `error_class`, a `retryable` flag and a short
  message that says what to check — without URLs' query strings, credentials or tokens.

`parse_json(response)` (and `HttpSession.request_json`) decodes a JSON answer and refuses the
classic lies of intranet systems: an HTML login/error/firewall page served with status 200, an
empty body, or JSON cut off mid-transfer.

`AuthSchema` and `HttpOptionsSchema` validate those keys; connector schemas reuse them.
"""
from __future__ import annotations

import base64
import codecs
import html
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from connectors.base import SourceError

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
# How much of an unexpected body goes into an error's detail: enough to recognise a login or
# firewall page, short enough for a run report.
SNIPPET_CHARS = 200

AUTH_TYPES = ("none", "basic", "bearer", "token_endpoint")

MISSING: Any = object()


# --------------------------------------------------------------------------- config schemas


class _StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class AuthSchema(_StrictSchema):
    """The `auth` block: `{type: none | basic | bearer | token_endpoint, …}`.

    token_endpoint covers OAuth2 client credentials (`client_id` + `client_secret`) as well as
    vendor logins, e.g. Seeyon: `{url: …/seeyon/rest/token, body: {userName, password},
    body_format: json, token_path: id, header: token}`, or DingTalk-style GET with `params`.
    """

    type = fields.String(required=True, validate=validate.OneOf(AUTH_TYPES))
    username = fields.String()
    password = fields.String()
    token = fields.String()
    url = fields.Url(require_tld=False)
    method = fields.String(load_default="POST", validate=validate.OneOf(("GET", "POST")))
    client_id = fields.String()
    client_secret = fields.String()
    body = fields.Dict(keys=fields.String())
    params = fields.Dict(keys=fields.String())
    body_format = fields.String(load_default="form", validate=validate.OneOf(("form", "json")))
    token_path = fields.String(load_default="access_token")
    expires_in_path = fields.String(load_default="expires_in")
    # Header carrying the credential; prefix defaults to "Bearer " for Authorization, else "".
    header = fields.String(load_default="Authorization")
    prefix = fields.String(load_default=None)

    @validates_schema
    def _required_per_type(self, data: dict[str, Any], **_: Any) -> None:
        needs = {"basic": ("username", "password"), "bearer": ("token",), "token_endpoint": ("url",)}
        missing = [key for key in needs.get(data["type"], ()) if not data.get(key)]
        if missing:
            raise ValidationError(
                {key: [f"required for auth type {data['type']}"] for key in missing}
            )
        if data["type"] == "token_endpoint" and bool(data.get("client_id")) != bool(
            data.get("client_secret")
        ):
            raise ValidationError({"client_secret": ["client_id and client_secret go together"]})


class _TimeoutSchema(_StrictSchema):
    connect = fields.Float(load_default=DEFAULT_CONNECT_TIMEOUT, validate=validate.Range(min=0.1))
    read = fields.Float(load_default=DEFAULT_READ_TIMEOUT, validate=validate.Range(min=0.1))


class TimeoutField(fields.Field):
    """`timeout: 30` (seconds, for connecting and for each read) or `{connect: 5, read: 120}`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = {"connect": value, "read": value}
        if not isinstance(value, dict):
            raise ValidationError("a number of seconds or {connect: …, read: …}")
        return _TimeoutSchema().load(value)


class RetriesSchema(_StrictSchema):
    """`retries: {max_attempts, backoff, backoff_max, retry_after_max}` (seconds)."""

    max_attempts = fields.Integer(load_default=4, validate=validate.Range(min=1, max=20))
    backoff = fields.Float(load_default=0.5, validate=validate.Range(min=0))
    backoff_max = fields.Float(load_default=30.0, validate=validate.Range(min=0))
    # A Retry-After longer than this fails the request instead of stalling the run.
    retry_after_max = fields.Float(load_default=120.0, validate=validate.Range(min=0))


class HttpOptionsSchema(Schema):
    """HTTP keys shared by HTTP connectors; mix into a source schema next to BaseSourceSchema."""

    headers = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    timeout = TimeoutField(load_default=None)
    retries = fields.Nested(RetriesSchema, load_default=None)
    verify_tls = fields.Boolean(load_default=True)


@dataclass(frozen=True)
class HttpSettings:
    """Resolved HTTP options (defaults filled in)."""

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_attempts: int = 4
    backoff: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    verify_tls: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HttpSettings:
        """Settings from a source block loaded through `HttpOptionsSchema` (absent keys → defaults)."""
        timeout = config.get("timeout") or {}
        retries = config.get("retries") or {}
        base = cls()
        return cls(
            connect_timeout=timeout.get("connect", base.connect_timeout),
            read_timeout=timeout.get("read", base.read_timeout),
            max_attempts=retries.get("max_attempts", base.max_attempts),
            backoff=retries.get("backoff", base.backoff),
            backoff_max=retries.get("backoff_max", base.backoff_max),
            retry_after_max=retries.get("retry_after_max", base.retry_after_max),
            verify_tls=config.get("verify_tls", True),
            headers=dict(config.get("headers") or {}),
        )


# --------------------------------------------------------------------------- small helpers


def safe_url(url: str) -> str:
    """`url` without query string, fragment and user info: fit for messages (tokens often ride
    in the query, e.g. DingTalk's `?access_token=`)."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path


_SCRIPT_RE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)
_TAG_RE = re.compile(r"<[^>]*>")
_SPACE_RE = re.compile(r"\s+")


def body_snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The first `limit` characters of a body as a human reads it: tags, scripts and runs of
    whitespace removed, entities decoded — an HTML login page becomes "统一身份认证 用户名 密码"."""
    text = _TAG_RE.sub(" ", _SCRIPT_RE.sub(" ", text))
    text = _SPACE_RE.sub(" ", html.unescape(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def get_path(obj: Any, path: str | None, default: Any = MISSING) -> Any:
    """Follow a dotted path (`data.list`, `result.items.0`) into parsed JSON.

    An empty path is the object itself. Digits index lists. Returns `default` (the `MISSING`
    sentinel unless given) when any step is absent, so callers can tell absent from null.
    """
    if not path:
        return obj
    for step in path.split("."):
        if isinstance(obj, Mapping) and step in obj:
            obj = obj[step]
        elif isinstance(obj, list) and step.lstrip("-").isdigit() and -len(obj) <= int(step) < len(obj):
            obj = obj[int(step)]
        else:
            return default
    return obj


def error_hint(answer: Any) -> str:
    """The reason a JSON answer gives for itself, if any: vendors answer errors with status 200
    and put the reason in a field (DingTalk/WeCom `errmsg`, Feishu `msg`, OAuth
    `error_description`). "" when there is none."""
    if not isinstance(answer, Mapping):
        return ""
    for key in ("error_description", "errmsg", "msg", "message", "error"):
        value = answer.get(key)
        if value and isinstance(value, (str, int)):
            return body_snippet(str(value), 120)
    return ""


def extract_records(body: Any, records_path: str, where: str) -> list[dict[str, Any]]:
    """The list of record objects at `records_path` in a parsed JSON answer or file, or
    SourceError(error_class="protocol") saying what is there instead. `where` names the URL
    or file for the message.

    A null list is taken as empty: many servers (Go's nil slices, Java's nulls) serialize an empty
    collection that way, and the engine's guard judges empty answers anyway.
    """
    value = get_path(body, records_path)
    if value is MISSING:
        hint = error_hint(body)
        keys = sorted(body)[:10] if isinstance(body, Mapping) else type(body).__name__
        raise SourceError(
            f"records_path {records_path!r} not found in {where} (it has {keys})"
            + (f": {hint}" if hint else ""),
            error_class="protocol",
            detail={"where": where, "body": body_snippet(json.dumps(body, ensure_ascii=False))})
    if value is None:
        return []
    label = f"records_path {records_path!r}" if records_path else "the top level"
    if not isinstance(value, list):
        raise SourceError(f"{label} of {where} is a {type(value).__name__}, not a list of records"
                          + ("" if records_path else "; set records_path"),
                          error_class="protocol", detail={"where": where})
    for index, record in enumerate(value):
        if not isinstance(record, dict):
            raise SourceError(f"item {index} at {label} of {where} is a {type(record).__name__}, "
                              f"not an object", error_class="protocol", detail={"where": where})
    return value


def _looks_like_html(response: requests.Response, text: str) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    return "html" in content_type or text.lstrip()[:1] == "<"


def _declared_charset(response: requests.Response) -> str | None:
    """A charset the server declares that is neither UTF-8 nor requests' ISO-8859-1 default for
    text/* (older Chinese servers declare GBK); None otherwise or when Python does not know it."""
    charset = requests.utils.get_encoding_from_headers(response.headers)
    if not charset or charset.lower().replace("_", "-") in ("utf-8", "utf8", "iso-8859-1"):
        return None
    try:
        codecs.lookup(charset)
    except LookupError:
        return None
    return charset


def parse_json(response: requests.Response, *, source: str | None = None) -> Any:
    """The JSON body of `response`, or SourceError(error_class="protocol").

    Raised for an empty body, an HTML (or any non-JSON) page — typically a login, error or WAF
    page that intranet gateways serve with status 200 — and for invalid or cut-off JSON. The
    error's detail holds the first characters of the body with tags stripped.
    """
    raw = response.content or b""
    charset = _declared_charset(response)
    if charset in (None, "utf-8", "utf8"):
        # Fast path: orjson parses UTF-8 bytes several times faster than the stdlib; anything
        # it refuses (a BOM, UTF-16, broken JSON) takes the careful path below.
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    text = raw.decode(charset or "utf-8", errors="replace")
    try:
        # json.loads on bytes detects UTF-8/16/32 and a BOM itself.
        return json.loads(text if charset else raw)
    except ValueError as exc:
        where = safe_url(response.url or "")
        detail: dict[str, Any] = {"url": where, "status": response.status_code,
                                  "body": body_snippet(text)}
        if not text.strip():
            message = f"empty body from {where} where JSON was expected"
        elif _looks_like_html(response, text):
            message = (f"{where} answered an HTML page instead of JSON (a login, error or firewall "
                       f"page?): {body_snippet(text, 80)!r}")
        elif isinstance(exc, json.JSONDecodeError) and (
                exc.pos >= len(text.rstrip()) - 1 or exc.msg.startswith("Unterminated string")):
            # The parser ran out of input: the transfer stopped early, the JSON itself is fine.
            message = f"JSON from {where} is cut off after {len(raw)} bytes (truncated transfer?)"
        else:
            message = f"invalid JSON from {where}: {exc}"
        raise SourceError(message, error_class="protocol", source=source, detail=detail) from None


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_error(response: requests.Response, source: str | None) -> SourceError:
    status = response.status_code
    where = safe_url(response.url or "")
    detail = {"status": status, "url": where, "body": body_snippet(response.text or "")}
    if status == 401:
        message, error_class = f"HTTP 401 from {where}: credentials refused; check auth", "auth"
    elif status == 403:
        message, error_class = (f"HTTP 403 from {where}: access denied; check the account's "
                                f"permissions or the server's IP allow-list"), "auth"
    elif status == 404:
        message, error_class = f"HTTP 404 from {where}: check url and path", "http"
    elif status == 429:
        message, error_class = f"HTTP 429 from {where}: rate limited", "http"
    elif status >= 500:
        message, error_class = f"HTTP {status} from {where}: server error", "http"
    else:
        message, error_class = f"HTTP {status} from {where}", "http"
    retryable = status == 429 or status >= 500
    return SourceError(message, error_class=error_class, retryable=retryable, source=source,
                       detail=detail)


def _transport_error(exc: requests.RequestException, url: str, source: str | None) -> SourceError:
    where = safe_url(url)
    host = urlsplit(str(url)).hostname or where
    if isinstance(exc, (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                        requests.exceptions.InvalidURL)):
        return SourceError(f"invalid URL {where!r}: check url", error_class="config", source=source)
    if isinstance(exc, requests.exceptions.SSLError):
        # Retrying cannot fix a certificate; say what can.
        return SourceError(
            f"TLS verification failed for {host}: install the CA certificate or set verify_tls: false",
            error_class="transport", source=source, detail={"url": where})
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        message = f"timed out connecting to {host}: check the network path and firewall"
    elif isinstance(exc, requests.exceptions.Timeout):
        message = f"no answer from {where} within the read timeout"
    elif isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                          requests.exceptions.ContentDecodingError)):
        message = f"connection to {host} broke off mid-answer"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        message = f"cannot connect to {host}: check url, DNS and that the server is up"
    else:
        message = f"request to {where} failed: {type(exc).__name__}"
    return SourceError(message, error_class="transport", retryable=True, source=source,
                       detail={"url": where, "reason": type(exc).__name__})


# --------------------------------------------------------------------------- authentication


class Authenticator:
    """Adds credentials to a request. The base class is `auth: {type: none}`."""

    def apply(self, headers: dict[str, str]) -> None:
        """Put the credential into `headers` (may fetch a token)."""

    def refresh(self) -> bool:
        """Forget cached credentials after a 401; True if asking again can help."""
        return False


class HeaderAuth(Authenticator):
    """A fixed header: basic and bearer."""

    def __init__(self, header: str, value: str) -> None:
        self.header = header
        self.value = value

    def apply(self, headers: dict[str, str]) -> None:
        headers[self.header] = self.value


class TokenEndpointAuth(Authenticator):
    """A token fetched from a token endpoint, cached until shortly before it expires."""

    def __init__(self, config: Mapping[str, Any], session: HttpSession,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.session = session
        self.clock = clock
        self.header, self.prefix = _header_and_prefix(config)
        self._token: str | None = None
        self._expires_at = float("inf")

    def apply(self, headers: dict[str, str]) -> None:
        if self._token is None or self.clock() >= self._expires_at:
            self._fetch()
        headers[self.header] = f"{self.prefix}{self._token}"

    def refresh(self) -> bool:
        self._token = None
        return True

    def _request_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        body = dict(cfg.get("body") or {})
        if cfg.get("client_id") and not body:
            # OAuth2 client credentials grant (RFC 6749 §4.4), credentials in the form body,
            # which every server we met accepts.
            body = {"grant_type": "client_credentials", "client_id": cfg["client_id"],
                    "client_secret": cfg["client_secret"]}
        kwargs: dict[str, Any] = {"params": cfg.get("params") or None}
        if body:
            kwargs["json" if cfg.get("body_format") == "json" else "data"] = body
        return kwargs

    def _fetch(self) -> None:
        cfg = self.config
        where = safe_url(cfg["url"])
        try:
            answer = self.session.request_json(cfg.get("method", "POST"), cfg["url"],
                                               authenticate=False, **self._request_kwargs())
        except SourceError as exc:
            status = exc.detail.get("status")
            if status is not None and 400 <= status < 500 and status != 429:
                exc.error_class = "auth"
                exc.message = f"token endpoint {where} refused the credentials (HTTP {status})"
            else:
                exc.message = f"token endpoint: {exc.message}"
            raise
        token = get_path(answer, cfg.get("token_path") or "access_token")
        if token is MISSING or token in (None, "") or isinstance(token, (dict, list)):
            reason = error_hint(answer)
            raise SourceError(
                f"token endpoint {where} answered without a token at "
                f"{cfg.get('token_path') or 'access_token'!r}" + (f": {reason}" if reason else ""),
                error_class="auth", source=self.session.source,
                detail={"keys": sorted(answer) if isinstance(answer, Mapping) else []})
        self._token = str(token)
        self._expires_at = self._expiry(get_path(answer, cfg.get("expires_in_path") or "expires_in",
                                                 None))

    def _expiry(self, expires_in: Any) -> float:
        try:
            seconds = float(expires_in)
        except (TypeError, ValueError):
            return float("inf")  # no lifetime given: keep it until the server says 401
        # Renew a little early so a token does not expire between check and use.
        return self.clock() + seconds - min(60.0, seconds / 10)


def _header_and_prefix(auth: Mapping[str, Any]) -> tuple[str, str]:
    """Header name and value prefix of a token: "Authorization: Bearer …" unless configured."""
    header = auth.get("header") or "Authorization"
    prefix = auth.get("prefix")
    if prefix is None:
        prefix = "Bearer " if header.lower() == "authorization" else ""
    return header, prefix


def make_authenticator(auth: Mapping[str, Any] | None, session: HttpSession) -> Authenticator:
    """The authenticator for an `auth` block loaded through `AuthSchema` (None → no auth)."""
    kind = (auth or {}).get("type", "none")
    if kind == "none" or auth is None:
        return Authenticator()
    if kind == "basic":
        # UTF-8 credentials: Chinese user names are common and latin-1 cannot encode them.
        pair = f"{auth['username']}:{auth['password']}".encode()
        return HeaderAuth("Authorization", "Basic " + base64.b64encode(pair).decode("ascii"))
    if kind == "bearer":
        header, prefix = _header_and_prefix(auth)
        return HeaderAuth(header, f"{prefix}{auth['token']}")
    return TokenEndpointAuth(auth, session)


# --------------------------------------------------------------------------- the session


class HttpSession(requests.Session):
    """`requests.Session` with timeouts, retries, auth and classified errors (module docstring).

    `request()` takes two extra keywords: `authenticate=False` skips the auth (the token request
    itself), `raise_for_status=False` returns 4xx answers instead of raising (for vendors whose
    error bodies carry the reason). Retryable failures are retried either way.
    """

    def __init__(
        self,
        settings: HttpSettings | None = None,
        auth: Mapping[str, Any] | None = None,
        *,
        source: str | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__()
        self.settings = settings or HttpSettings()
        self.source = source
        # None means time.sleep looked up at call time, so tests may patch either.
        self._sleep = sleep
        self._rng = rng
        self.verify = self.settings.verify_tls
        self.headers.update(self.settings.headers)
        self.authenticator = make_authenticator(auth, self)

    def request(self, method: str, url: str, *, authenticate: bool = True,  # type: ignore[override]
                raise_for_status: bool = True, **kwargs: Any) -> requests.Response:
        s = self.settings
        kwargs.setdefault("timeout", (s.connect_timeout, s.read_timeout))
        extra_headers = dict(kwargs.pop("headers", None) or {})
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            headers = dict(extra_headers)
            if authenticate:
                self.authenticator.apply(headers)
            retry_after = None
            try:
                response = super().request(method, url, headers=headers, **kwargs)
            except requests.RequestException as exc:
                error = _transport_error(exc, url, self.source)
            else:
                if (response.status_code == 401 and authenticate and not refreshed
                        and self.authenticator.refresh()):
                    # One fresh token and one more try; a second 401 is a real refusal.
                    refreshed = True
                    attempt -= 1
                    continue
                error = _status_error(response, self.source) if response.status_code >= 400 else None
                if error is None or (not raise_for_status and not error.retryable):
                    return response
                retry_after = _retry_after_seconds(response)
            if not error.retryable or attempt >= s.max_attempts:
                if attempt > 1:
                    error.message += f" (after {attempt} attempts)"
                error.detail["attempts"] = attempt
                raise error
            wait = self._backoff(attempt) if retry_after is None else retry_after
            if wait > s.retry_after_max:
                error.message += f"; server asks to wait {wait:.0f}s, longer than retries.retry_after_max"
                raise error
            (self._sleep or time.sleep)(wait)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, so parallel
        workers that failed together do not come back together."""
        s = self.settings
        delay = min(s.backoff_max, s.backoff * 2 ** (attempt - 1))
        return delay / 2 + self._rng() * delay / 2

    def request_json(self, method: str, url: str, **kwargs: Any) -> Any:
        """`request` + `parse_json`: the decoded body, or SourceError."""
        return parse_json(self.request(method, url, **kwargs), source=self.source)

    def get_json(self, url: str, **kwargs: Any) -> Any:
        return self.request_json("GET", url, **kwargs)

    def post_json(self, url: str, **kwargs: Any) -> Any:
        return self.request_json("POST", url, **kwargs)


def build_session(
    config: Mapping[str, Any],
    *,
    source: str | None = None,
    sleep: Callable[[float], None] | None = None,
) -> HttpSession:
    """The session for a source block validated with `HttpOptionsSchema` (+ `auth`)."""
    return HttpSession(HttpSettings.from_config(config), config.get("auth"), source=source,
                       sleep=sleep)
