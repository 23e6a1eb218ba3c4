"""The generic `soap` connector, and `SoapClient`, the hardened zeep client vendor presets share.

    erp:
      connector: soap
      wsdl: http://erp.example.com/services/Hr?wsdl      # or a file path, relative to the config
      wsse: {username: sync, password: "${ERP_PASSWORD}"}  # optional WS-Security UsernameToken
      provides: [staff]
      operations:
        staff: {operation: getEmployees, args: {company: "01"}, result_path: Employee,
                incremental_arg: changedSince, cursor_field: changed}
      timeout: 60
      retries: {max_attempts: 3}

Each kind is one operation call: `args` are positional (a list) or by name (a dict); the result
is turned into plain dicts and lists by `zeep.helpers.serialize_object` and `result_path`
(dotted, digits index lists) points at the records in it. One call is one Page.

Security: every XML document (the WSDL, its imports, every response) is parsed with DTDs,
entity declarations and external references forbidden (XXE, billion laughs, SSRF through
xsd:import). The OA answers are untrusted input like any other.

Transport: zeep sends through the same `HttpSession` as the REST connectors (timeouts, retries
with backoff for connection errors, 429 and 5xx, classified `SourceError`s). SOAP faults become
`SourceError` with error_class "auth" when the fault is about credentials, else "protocol".
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
import zeep
import zeep.exceptions
from lxml import etree
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from zeep.helpers import serialize_object
from zeep.proxy import ServiceProxy
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from connectors.base import KINDS, BaseSourceSchema, Connector, Page, SourceError
from connectors.http import (
    MISSING,
    HttpOptionsSchema,
    HttpSession,
    HttpSettings,
    body_snippet,
    get_path,
    safe_url,
)
from connectors.registry import register
from connectors.rest import _later

# Faults that mean "who you are was refused" rather than "what you asked is wrong": WS-Security
# fault codes (wsse:FailedAuthentication, wsse:InvalidSecurityToken …) and the words Java/.NET
# stacks and Chinese OA systems put in faultstrings.
_AUTH_FAULT = re.compile(
    r"auth|login|logon|password|credential|unauthori[sz]ed|access.?denied|permission|forbidden|"
    r"token|invalidsecurity|failedauthentication|not.?allowed|"
    r"认证|登录|登陆|密码|权限|授权|令牌|签名|白名单|非法访问|拒绝访问",
    re.I,
)
# A SOAP fault element anywhere in a body (any prefix, SOAP 1.1 or 1.2).
_FAULT_ELEMENT = re.compile(rb"<(?:[\w.-]+:)?Fault[\s>/]")


def looks_like_auth_refusal(*texts: Any) -> bool:
    """Whether a fault/error text speaks of credentials, permissions or an allow-list."""
    return any(text and _AUTH_FAULT.search(str(text)) for text in texts)


# --------------------------------------------------------------------------- config schema


class WsseSchema(Schema):
    """`wsse: {username, password, digest}`: a WS-Security UsernameToken on every request."""

    class Meta:
        unknown = RAISE

    username = fields.String(required=True, validate=validate.Length(min=1))
    password = fields.String(required=True)
    # PasswordDigest instead of PasswordText; few servers support it.
    digest = fields.Boolean(load_default=False)


class ArgsField(fields.Field):
    """Operation arguments: a list (positional, e.g. XFire's in0…in5) or a dict (by name)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, (list, dict)):
            raise ValidationError("a list of positional arguments or a {name: value} map")
        return value


class OperationSchema(Schema):
    """One stream: `operations: {kind: {operation, args, result_path, …}}`."""

    class Meta:
        unknown = RAISE

    operation = fields.String(required=True, validate=validate.Length(min=1))
    args = ArgsField(load_default=list)
    # Dotted path into the serialized result; empty means the result itself.
    result_path = fields.String(load_default="")
    service = fields.String(load_default=None)
    port = fields.String(load_default=None)
    # Where the incremental cursor goes: an argument name (dict args) or an index (list args).
    incremental_arg = fields.Raw(load_default=None)
    # Record field whose maximum becomes the page cursor.
    cursor_field = fields.String(load_default=None)
    # An empty answer is an error (a source that is never legitimately empty), not 0 records.
    empty_is_error = fields.Boolean(load_default=False)

    @validates_schema
    def _incremental_arg_fits_args(self, data: dict[str, Any], **_: Any) -> None:
        arg = data.get("incremental_arg")
        if arg is None:
            return
        if isinstance(data["args"], list):
            if isinstance(arg, bool) or not isinstance(arg, int) or arg < 0:
                raise ValidationError({"incremental_arg": ["an argument index (0, 1, …) for list args"]})
        elif not isinstance(arg, str) or not arg:
            raise ValidationError({"incremental_arg": ["an argument name for dict args"]})


class SoapOptionsSchema(HttpOptionsSchema):
    """Keys every zeep-based source has (the generic `soap` one and vendor presets)."""

    # Overrides the service address the WSDL names (intranet proxies, WSDLs that name
    # "localhost" — XFire writes whatever host the WSDL was fetched through).
    endpoint = fields.Url(load_default=None, require_tld=False)


class SoapSourceSchema(BaseSourceSchema, SoapOptionsSchema):
    wsdl = fields.String(required=True, validate=validate.Length(min=1))
    wsse = fields.Nested(WsseSchema, load_default=None)
    operations = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS)),
                             values=fields.Nested(OperationSchema), required=True)

    @validates_schema
    def _operation_per_kind(self, data: dict[str, Any], **_: Any) -> None:
        missing = [k for k in data.get("provides", ()) if k not in data.get("operations", {})]
        if missing:
            raise ValidationError({"operations": [f"no operation for {', '.join(missing)}"]})


# --------------------------------------------------------------------------- transport


class SoapHttpSession(HttpSession):
    """`HttpSession` that hands SOAP faults to zeep instead of retrying them.

    SOAP 1.1 sends a fault with HTTP 500 (SOAP 1.1 §6.2). To the retry loop that is a server
    error worth retrying, but it is the server's definite answer: retrying only repeats it and
    the fault text — the one useful diagnosis — would be lost in an "HTTP 500". So a 500 whose
    body holds a Fault element is passed on as status 200; zeep then finds the Fault element
    and raises `zeep.exceptions.Fault`, which `soap_error` classifies.
    """

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = super().send(request, **kwargs)
        if response.status_code == 500 and "xml" in response.headers.get("Content-Type", "").lower():
            if _FAULT_ELEMENT.search(response.content or b""):
                response.status_code = 200
        return response


def _forbidden_message(exc: Exception, where: str) -> str:
    if isinstance(exc, zeep.exceptions.DTDForbidden):
        what = "a DTD (<!DOCTYPE …>)"
    elif isinstance(exc, zeep.exceptions.EntitiesForbidden):
        what = f"an entity declaration ({exc.name!r})"
    else:
        what = f"an external reference ({safe_url(getattr(exc, 'url', ''))})"
    return (f"refused XML from {where}: it contains {what}, which is forbidden (XML entity and "
            f"external-reference attacks); the server or something in between is not answering "
            f"plain SOAP")


def soap_error(exc: Exception, where: str, *, source: str | None = None) -> SourceError:
    """A zeep / lxml exception as a classified `SourceError` (module docstring)."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, (zeep.exceptions.DTDForbidden, zeep.exceptions.EntitiesForbidden,
                        zeep.exceptions.ExternalReferenceForbidden)):
        return SourceError(_forbidden_message(exc, where), error_class="protocol", source=source,
                           detail={"where": where, "reason": type(exc).__name__})
    if isinstance(exc, zeep.exceptions.Fault):
        code = str(exc.code or "")
        text = body_snippet(str(exc.message or ""), 160)
        auth = looks_like_auth_refusal(code, text)
        return SourceError(
            f"SOAP fault from {where}: {text or code or 'no faultstring'}"
            + ("; check the credentials, the account's permissions or the IP allow-list" if auth else ""),
            error_class="auth" if auth else "protocol", source=source,
            detail={"where": where, "faultcode": code})
    if isinstance(exc, zeep.exceptions.TransportError):
        status = int(exc.status_code or 0)
        content = exc.content.decode("utf-8", "replace") if isinstance(exc.content, bytes) else ""
        detail = {"where": where, "status": status, "body": body_snippet(content)}
        if status == 200 or "invalid XML" in str(exc.message):
            return SourceError(f"{where} answered something that is not SOAP XML "
                               f"(a login, error or firewall page?): {body_snippet(content, 80)!r}",
                               error_class="protocol", source=source, detail=detail)
        return SourceError(f"HTTP {status} from {where}", error_class="http", source=source,
                           retryable=status == 429 or status >= 500, detail=detail)
    if isinstance(exc, (zeep.exceptions.XMLSyntaxError, zeep.exceptions.XMLParseError,
                        etree.XMLSyntaxError)):
        return SourceError(f"invalid XML from {where}: {body_snippet(str(exc), 120)}",
                           error_class="protocol", source=source, detail={"where": where})
    if isinstance(exc, zeep.exceptions.ValidationError):
        return SourceError(f"{where}: the request does not fit the WSDL: {exc}", error_class="config",
                           source=source, detail={"where": where})
    if isinstance(exc, (zeep.exceptions.LookupError, zeep.exceptions.NamespaceError,
                        zeep.exceptions.WsdlSyntaxError)):
        return SourceError(f"{where}: unusable WSDL: {body_snippet(str(exc), 160)}",
                           error_class="protocol", source=source, detail={"where": where})
    if isinstance(exc, requests.RequestException):
        # Only file:// loads get here; HTTP goes through HttpSession, which classifies.
        return SourceError(f"cannot load {where}: {type(exc).__name__}", error_class="transport",
                           retryable=True, source=source, detail={"where": where})
    if isinstance(exc, OSError):
        return SourceError(f"cannot read {where}: {exc.strerror or exc}", error_class="config",
                           source=source, detail={"where": where})
    return SourceError(f"SOAP call to {where} failed: {type(exc).__name__}: {body_snippet(str(exc), 120)}",
                       error_class="protocol", source=source, detail={"where": where})


class SoapClient:
    """A zeep client built from a source block: hardened parsing, shared HTTP session,
    classified errors, results as plain data. The WSDL is loaded on first use."""

    def __init__(self, wsdl: str, config: Mapping[str, Any], *, source: str | None = None,
                 base_dir: Path | None = None) -> None:
        scheme = urlsplit(wsdl).scheme.lower()
        if scheme not in ("http", "https", "file") and not Path(wsdl).is_absolute():
            wsdl = str((base_dir or Path.cwd()) / wsdl)
        self.wsdl = wsdl
        self.where = safe_url(wsdl) if scheme in ("http", "https") else wsdl
        self.config = config
        self.source = source
        self._client: zeep.Client | None = None
        self._session: SoapHttpSession | None = None

    @property
    def client(self) -> zeep.Client:
        if self._client is None:
            settings = HttpSettings.from_config(self.config)
            self._session = SoapHttpSession(settings, None, source=self.source)
            timeout = (settings.connect_timeout, settings.read_timeout)
            # Both timeouts explicit: zeep passes operation_timeout=None through otherwise,
            # which would disable the session's default and let a hung OA stall the run.
            transport = Transport(session=self._session, timeout=timeout, operation_timeout=timeout)
            hardened = zeep.Settings(strict=False, forbid_dtd=True, forbid_entities=True,
                                     forbid_external=True)
            wsse_cfg = self.config.get("wsse")
            wsse = (UsernameToken(wsse_cfg["username"], wsse_cfg["password"],
                                  use_digest=wsse_cfg.get("digest", False)) if wsse_cfg else None)
            try:
                self._client = zeep.Client(self.wsdl, transport=transport, settings=hardened, wsse=wsse)
            except Exception as exc:  # noqa: BLE001 - every failure is classified, none leaks
                self._session.close()
                raise soap_error(exc, self.where, source=self.source) from None
        return self._client

    def _proxy(self, service: str | None, port: str | None) -> Any:
        client = self.client
        endpoint = self.config.get("endpoint")
        if not (service or port or endpoint):
            return client.service
        services = client.wsdl.services
        try:
            svc = services[service] if service else next(iter(services.values()))
            prt = svc.ports[port] if port else next(iter(svc.ports.values()))
        except (KeyError, StopIteration):
            raise SourceError(
                f"WSDL {self.where} has no service {service or '(any)'!r} / port {port or '(any)'!r}; "
                f"services: {', '.join(services) or 'none'}", error_class="config",
                source=self.source) from None
        address = endpoint or prt.binding_options.get("address")
        return ServiceProxy(client, prt.binding, address=address)

    def call(self, operation: str, args: list[Any] | Mapping[str, Any] = (), *,
             service: str | None = None, port: str | None = None) -> Any:
        """Call `operation` and return its result as plain dicts / lists / scalars."""
        proxy = self._proxy(service, port)
        try:
            method = proxy[operation]
        except (AttributeError, KeyError, ValueError):
            raise SourceError(f"WSDL {self.where} has no operation {operation!r}",
                              error_class="config", source=self.source) from None
        where = f"{self.where} {operation}"
        try:
            result = method(**args) if isinstance(args, Mapping) else method(*args)
        except Exception as exc:  # noqa: BLE001 - every failure is classified, none leaks
            raise soap_error(exc, where, source=self.source) from None
        return serialize_object(result, dict)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._client = None
        self._session = None


def records_at(result: Any, path: str, where: str) -> list[dict[str, Any]]:
    """The records at `path` in a serialized SOAP result. None (xsi:nil, an empty array) is
    no records; a single object is one record, because zeep gives a bare object where the
    schema allows only one."""
    value = get_path(result, path)
    if value is MISSING:
        keys = sorted(result)[:10] if isinstance(result, Mapping) else type(result).__name__
        raise SourceError(f"result_path {path!r} not found in the answer of {where} (it has {keys})",
                          error_class="protocol", detail={"where": where})
    if value is None:
        return []
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise SourceError(f"result_path {path!r} of {where} holds {type(value).__name__}, not records",
                          error_class="protocol", detail={"where": where})
    return [dict(item) for item in value]


# --------------------------------------------------------------------------- the connector


def attributed(pages: Iterator[Page], source: str, kind: str) -> Iterator[Page]:
    """`pages`, with any SourceError raised while streaming them naming `source` and `kind`
    (the client and helpers below raise without knowing which stream they serve)."""
    try:
        yield from pages
    except SourceError as exc:
        exc.source = exc.source or source
        exc.kind = exc.kind or kind
        raise


def read_first_page(connector: Connector) -> None:
    """A cheap `check()`: fetch the first page of the first kind, stop there."""
    pages = connector.read(connector.kinds[0])
    try:
        next(pages, None)
    finally:
        pages.close()


@register
class SoapConnector(Connector):
    """Reads records from SOAP operations, one Page per call."""

    type_name: ClassVar[str] = "soap"
    config_schema: ClassVar[type[Schema]] = SoapSourceSchema
    secret_fields: ClassVar[tuple[str, ...]] = ("wsse.password", "headers")
    supports_incremental: ClassVar[bool] = True

    def __init__(self, name: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)
        self.soap = SoapClient(config["wsdl"], config, source=name, base_dir=self.base_dir)

    def is_incremental(self, kind: str) -> bool:
        operation = self.config["operations"].get(kind) or {}
        return operation.get("incremental_arg") is not None

    def read(self, kind: str, *, since: str | None = None) -> Iterator[Page]:
        spec = self.config["operations"].get(kind)
        if spec is None:
            raise SourceError(f"no operation configured for {kind}", error_class="config",
                              source=self.name, kind=kind)
        yield from attributed(self._read(spec, since), self.name, kind)

    def _read(self, spec: Mapping[str, Any], since: str | None) -> Iterator[Page]:
        args: Any = spec["args"]
        arg = spec.get("incremental_arg")
        if since is not None and arg is not None:
            if isinstance(args, list):
                args = list(args) + [None] * (arg + 1 - len(args))
            else:
                args = dict(args)
            args[arg] = since
        result = self.soap.call(spec["operation"], args, service=spec.get("service"),
                                port=spec.get("port"))
        where = f"{self.soap.where} {spec['operation']}"
        records = records_at(result, spec.get("result_path") or "", where)
        if not records:
            if spec.get("empty_is_error") and since is None:
                raise SourceError(f"{where} returned nothing (operations.*.empty_is_error)",
                                  error_class="empty")
            return
        cursor: Any = None
        if spec.get("cursor_field"):
            cursor = since
            for record in records:
                cursor = _later(cursor, record.get(spec["cursor_field"]))
        yield Page(records, None if cursor is None else str(cursor), {"operation": spec["operation"]})

    def check(self) -> None:
        read_first_page(self)

    def close(self) -> None:
        self.soap.close()
