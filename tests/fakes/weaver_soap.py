"""A fake Weaver e-cology HrmService (XFire SOAP) on a local port, for connector and sync tests.

`WeaverSoapFake(users=…, departments=…, subcompanies=…)` is a context manager running a small WSGI
app (werkzeug `make_server` in a thread). `GET …/services/HrmService?wsdl` serves a WSDL shaped
like the one XFire generates for e-cology (target namespace http://localhost/services/HrmService,
beans in http://webservice.hrm.weaver, positional parameters in0…in5, result element `out`);
`POST …/services/HrmService` answers getHrmUserInfo / getHrmDepartmentInfo /
getHrmSubcompanyInfo from the lists, applying the OA's filters (in2/in3 id lists, in5
lastmoddate ≥). Records are dicts of bean fields (strings; None is sent as xsi:nil).

`mode` switches the answers: "ok"; "empty" (`out` is nil, as when the IP allow-list refuses the
caller); "empty_array" (an empty `out`); "fault" (a SOAP fault with HTTP 500); "http500" (an
HTML error page with HTTP 500); "dtd" (a response carrying a DTD with an external entity);
"wsdl_dtd" (the WSDL itself carries one). `calls` records (operation, [in0, in1, …]) per request
and `bodies` the raw request bodies.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

TNS = "http://localhost/services/HrmService"
BEANS_NS = "http://webservice.hrm.weaver"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
PATH = "/services/HrmService"

USER_FIELDS = (
    "userid workcode lastname loginid sex mobile telephone email certificatenum birthday folk "
    "educationlevel degree departmentid departmentname subcompanyid1 subcompanyname jobtitle "
    "managerid status startdate enddate createdate lastChangdate policy bepartydate bememberdate "
    "islabouunion dsporder departmentcode subcompanycode"
).split()
DEPARTMENT_FIELDS = "departmentid subcompanyid code shortname fullname supdepartmentid showorder canceled lastChangdate".split()
SUBCOMPANY_FIELDS = "subcompanyid code shortname fullname supsubcompanyid showorder canceled lastChangdate".split()

# operation → (parameter count, bean name, bean fields)
OPERATIONS: dict[str, tuple[int, str, list[str]]] = {
    "getHrmUserInfo": (6, "UserBean", USER_FIELDS),
    "getHrmDepartmentInfo": (2, "DepartmentBean", DEPARTMENT_FIELDS),
    "getHrmSubcompanyInfo": (1, "SubCompanyBean", SUBCOMPANY_FIELDS),
}
MODES = ("ok", "empty", "empty_array", "fault", "http500", "dtd", "wsdl_dtd")
EVIL_DOCTYPE = '<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


def build_wsdl(address: str) -> str:
    """An XFire-style document/literal WSDL for the three operations."""
    elements, beans, messages, port_ops, binding_ops = [], [], [], [], []
    for name, (params, bean, bean_fields) in OPERATIONS.items():
        ins = "".join(f'<xsd:element maxOccurs="1" minOccurs="1" name="in{i}" nillable="true" '
                      f'type="xsd:string"/>' for i in range(params))
        elements.append(
            f'<xsd:element name="{name}"><xsd:complexType><xsd:sequence>{ins}</xsd:sequence>'
            f'</xsd:complexType></xsd:element>'
            f'<xsd:element name="{name}Response"><xsd:complexType><xsd:sequence>'
            f'<xsd:element maxOccurs="1" minOccurs="1" name="out" nillable="true" type="ns1:ArrayOf{bean}"/>'
            f'</xsd:sequence></xsd:complexType></xsd:element>')
        members = "".join(f'<xsd:element minOccurs="0" name="{f}" nillable="true" type="xsd:string"/>'
                          for f in bean_fields)
        beans.append(
            f'<xsd:complexType name="ArrayOf{bean}"><xsd:sequence><xsd:element maxOccurs="unbounded" '
            f'minOccurs="0" name="{bean}" nillable="true" type="ns1:{bean}"/></xsd:sequence></xsd:complexType>'
            f'<xsd:complexType name="{bean}"><xsd:sequence>{members}</xsd:sequence></xsd:complexType>')
        messages.append(
            f'<wsdl:message name="{name}Request"><wsdl:part name="parameters" element="tns:{name}"/></wsdl:message>'
            f'<wsdl:message name="{name}Response"><wsdl:part name="parameters" element="tns:{name}Response"/></wsdl:message>')
        port_ops.append(
            f'<wsdl:operation name="{name}"><wsdl:input name="{name}Request" message="tns:{name}Request"/>'
            f'<wsdl:output name="{name}Response" message="tns:{name}Response"/></wsdl:operation>')
        binding_ops.append(
            f'<wsdl:operation name="{name}"><wsdlsoap:operation soapAction=""/>'
            f'<wsdl:input name="{name}Request"><wsdlsoap:body use="literal"/></wsdl:input>'
            f'<wsdl:output name="{name}Response"><wsdlsoap:body use="literal"/></wsdl:output></wsdl:operation>')
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<wsdl:definitions targetNamespace="{TNS}" xmlns:tns="{TNS}" xmlns:ns1="{BEANS_NS}" '
        f'xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:wsdlsoap="http://schemas.xmlsoap.org/wsdl/soap/" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f'<wsdl:types>'
        f'<xsd:schema attributeFormDefault="qualified" elementFormDefault="qualified" targetNamespace="{TNS}">'
        f'{"".join(elements)}</xsd:schema>'
        f'<xsd:schema attributeFormDefault="qualified" elementFormDefault="qualified" targetNamespace="{BEANS_NS}">'
        f'{"".join(beans)}</xsd:schema>'
        f'</wsdl:types>{"".join(messages)}'
        f'<wsdl:portType name="HrmServicePortType">{"".join(port_ops)}</wsdl:portType>'
        f'<wsdl:binding name="HrmServiceHttpBinding" type="tns:HrmServicePortType">'
        f'<wsdlsoap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>'
        f'{"".join(binding_ops)}</wsdl:binding>'
        f'<wsdl:service name="HrmService"><wsdl:port name="HrmServiceHttpPort" binding="tns:HrmServiceHttpBinding">'
        f'<wsdlsoap:address location="{escape(address)}"/></wsdl:port></wsdl:service>'
        f'</wsdl:definitions>'
    )


def _ids(text: str | None) -> set[str] | None:
    return {part.strip() for part in text.split(",") if part.strip()} if text else None


def _bean_xml(bean: str, record: dict[str, Any], bean_fields: Iterable[str]) -> str:
    parts = []
    for name in bean_fields:
        if name not in record:
            continue
        value = record[name]
        parts.append(f'<{name} xsi:nil="true"/>' if value is None else f"<{name}>{escape(str(value))}</{name}>")
    return f'<{bean} xmlns="{BEANS_NS}">{"".join(parts)}</{bean}>'


def envelope(body: str, doctype: str = "") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>{doctype}'
            f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body>{body}</soap:Body></soap:Envelope>')


class _QuietHandler(WSGIRequestHandler):
    def log(self, *args: Any) -> None:
        """No access log: test output stays readable."""


class WeaverSoapFake:
    """The fake HrmService (module docstring)."""

    def __init__(self, *, users: list[dict[str, Any]] | None = None,
                 departments: list[dict[str, Any]] | None = None,
                 subcompanies: list[dict[str, Any]] | None = None) -> None:
        self.users = users or []
        self.departments = departments or []
        self.subcompanies = subcompanies or []
        self.mode = "ok"
        self.fault_string = "java.lang.NullPointerException"
        self.calls: list[tuple[str, list[str | None]]] = []
        self.bodies: list[bytes] = []
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True,
                                   request_handler=_QuietHandler)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self.address = self.base + PATH
        self.wsdl_url = self.address + "?wsdl"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> "WeaverSoapFake":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the WSGI app ----------------------------------------------------------------------

    def app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path != PATH:
            response = Response("not found", status=404)
        elif request.method == "GET":
            wsdl = build_wsdl(self.address)
            if self.mode == "wsdl_dtd":
                wsdl = wsdl.replace("?>", "?>" + EVIL_DOCTYPE, 1)
            response = Response(wsdl, content_type="text/xml; charset=UTF-8")
        else:
            response = self._post(request.get_data())
        return response(environ, start_response)

    def _post(self, body: bytes) -> Response:
        self.bodies.append(body)
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        root = etree.fromstring(body, parser)
        call = root.find(f"{{{SOAP_NS}}}Body")[0]
        operation = etree.QName(call).localname
        args = [child.text for child in call]
        self.calls.append((operation, args))
        if self.mode == "http500":
            return Response("<html><body><h1>500 Internal Server Error</h1></body></html>",
                            status=500, content_type="text/html")
        if self.mode == "fault":
            fault = (f"<soap:Fault><faultcode>soap:Server</faultcode>"
                     f"<faultstring>{escape(self.fault_string)}</faultstring></soap:Fault>")
            return Response(envelope(fault), status=500, content_type="text/xml; charset=UTF-8")
        _, bean, bean_fields = OPERATIONS[operation]
        if self.mode == "empty":
            out = '<ns1:out xsi:nil="true"/>'
        else:
            records = [] if self.mode == "empty_array" else self._select(operation, args)
            out = f"<ns1:out>{''.join(_bean_xml(bean, r, bean_fields) for r in records)}</ns1:out>"
        doctype = ""
        if self.mode == "dtd":
            doctype = EVIL_DOCTYPE
            out = out.replace("<ns1:out>", "<ns1:out>&xxe;", 1)
        answer = f'<ns1:{operation}Response xmlns:ns1="{TNS}">{out}</ns1:{operation}Response>'
        return Response(envelope(answer, doctype), content_type="text/xml; charset=UTF-8")

    def _select(self, operation: str, args: list[str | None]) -> list[dict[str, Any]]:
        """The OA's filters: comma-separated id lists and lastmoddate ≥ (as text, like its SQL)."""
        if operation == "getHrmSubcompanyInfo":
            return self.subcompanies
        if operation == "getHrmDepartmentInfo":
            subs = _ids(args[1])
            return [d for d in self.departments if subs is None or str(d.get("subcompanyid")) in subs]
        subs, depts, since = _ids(args[2]), _ids(args[3]), args[5]
        return [u for u in self.users
                if (subs is None or str(u.get("subcompanyid1")) in subs)
                and (depts is None or str(u.get("departmentid")) in depts)
                and (not since or str(u.get("lastChangdate") or "") >= since)]


def sample_org() -> dict[str, list[dict[str, Any]]]:
    """A small enterprise: two subcompanies (one under the other), departments in both, a
    dissolved department, and staff with and without party membership."""
    subcompanies = [
        {"subcompanyid": "1", "code": None, "shortname": "集团总部", "fullname": "某某集团有限公司",
         "supsubcompanyid": "0", "showorder": "1", "canceled": "0", "lastChangdate": "2024-01-01"},
        {"subcompanyid": "2", "code": None, "shortname": "一分公司", "fullname": "某某集团第一分公司",
         "supsubcompanyid": "1", "showorder": "2", "canceled": None, "lastChangdate": "2024-01-01"},
    ]
    departments = [
        {"departmentid": "11", "subcompanyid": "1", "shortname": "办公室", "fullname": "党委办公室",
         "supdepartmentid": "0", "canceled": "0", "lastChangdate": "2024-01-01"},
        {"departmentid": "12", "subcompanyid": "1", "shortname": "综合科", "fullname": "综合科",
         "supdepartmentid": "11", "canceled": "0", "lastChangdate": "2024-01-01"},
        {"departmentid": "21", "subcompanyid": "2", "shortname": "生产部", "fullname": "生产部",
         "supdepartmentid": "0", "canceled": "0", "lastChangdate": "2024-01-01"},
        {"departmentid": "22", "subcompanyid": "2", "shortname": "旧车间", "fullname": "旧车间",
         "supdepartmentid": "21", "canceled": "1", "lastChangdate": "2024-01-01"},
    ]
    users = [
        {"userid": "101", "workcode": "E001", "lastname": "张伟", "loginid": "zhangwei", "sex": "0",
         "mobile": "13800000001", "email": "zw@example.com", "certificatenum": "110105198001010016",
         "birthday": "1980-01-01", "folk": "汉族", "educationlevel": "本科", "departmentid": "11",
         "subcompanyid1": "1", "jobtitle": "23", "managerid": "", "status": "1", "startdate": "2005-07-01",
         "lastChangdate": "2024-03-01", "policy": "中共党员", "bepartydate": "2003-06-15"},
        {"userid": "102", "workcode": "E002", "lastname": "李娜", "loginid": "lina", "sex": "1",
         "mobile": "13800000002", "certificatenum": "110105199002020026", "birthday": "1990-02-02",
         "folk": "回族", "educationlevel": "硕士", "departmentid": "21", "subcompanyid1": "2",
         "jobtitle": "24", "status": "0", "startdate": "2023-09-01", "lastChangdate": "2024-04-01",
         "policy": "预备党员", "bepartydate": "2024-01-10"},
        {"userid": "103", "workcode": "E003", "lastname": "王强", "loginid": "wangqiang", "sex": "0",
         "mobile": None, "certificatenum": None, "birthday": "1985-05-05", "folk": "汉族",
         "educationlevel": "大专", "departmentid": "12", "subcompanyid1": "1", "jobtitle": "25",
         "status": "5", "startdate": "2010-01-01", "lastChangdate": "2024-02-01", "policy": "群众",
         "bepartydate": None},
    ]
    return {"users": users, "departments": departments, "subcompanies": subcompanies}
