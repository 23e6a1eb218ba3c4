"""Hostile source data in the console: every page that shows it shows it escaped.

The site's OA export and party roster carry names like `<script>alert(1)</script>`,
`"><img src=x onerror=alert(1)>`, quotes, a 300-character name, an RTL override and Arabic and
Hebrew text (tests/web/console_sites.py `plant_hostile`), synced through the real pipeline. Each
page is parsed as a browser would: the payload must never become an element or an attribute
(no <script> with alert, no <img src=x>, no on* handler), while its text is still there, escaped.
The layout at 390 px with the same data is checked in the browser tests.
"""
from __future__ import annotations

import csv
import html
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from records.models import Mismatch, OrgUnit, PartyOrg, Person
from tests.web.console_sites import (
    HOSTILE_NAMES, HOSTILE_ORG_NAME, HOSTILE_UNIT_NAME, ConsoleSite, build_console_site, login, make_app,
)


class ElementCollector(HTMLParser):
    """Elements and attributes as a browser's parser sees them, and script bodies."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def injected(page_html: str) -> list[str]:
    """What the hostile data made of the page: elements or handlers it must never produce."""
    parser = ElementCollector()
    parser.feed(page_html)
    found = []
    for tag, attrs in parser.elements:
        handlers = [a for a in attrs if a.startswith("on")]
        if handlers:
            found.append(f"<{tag}> with event handler {handlers}")
        if tag == "img" and attrs.get("src") == "x":
            found.append("<img src=x>")
        if tag == "script" and "src" not in attrs and attrs.get("type") not in ("application/json",):
            found.append("inline <script> (CSP forbids them; data belongs in application/json blocks)")
    for body in parser.scripts:
        if "alert(1)" in body and "<script>" in body:
            found.append("a JSON block holds a raw <script> tag (use |tojson, which escapes <)")
    if re.search(r"<script>alert", page_html) or re.search(r"<img src=x", page_html):
        found.append("raw payload in the markup")
    return found


@pytest.fixture(scope="module")
def cs(tmp_path_factory: pytest.TempPathFactory) -> ConsoleSite:
    folder: Path = tmp_path_factory.mktemp("hostile")
    return build_console_site(folder / "src", f"sqlite:///{folder / 'console.db'}", hostile=True)


@pytest.fixture(scope="module")
def client(cs: ConsoleSite):
    client = make_app(cs).test_client()
    login(client, "admin")
    return client


@pytest.fixture(scope="module")
def planted(cs: ConsoleSite) -> dict[str, object]:
    """Where the hostile data ended up after the sync (it must have got through)."""
    with cs.session() as s:
        persons = {n: s.scalar(select(Person.id).where(Person.name == n)) for n in HOSTILE_NAMES}
        missing = [n for n, pid in persons.items() if pid is None]
        assert not missing, f"the sync dropped hostile names: {missing}"
        mismatches = {n: s.scalar(select(Mismatch.id).where(Mismatch.subject_label == n).order_by(Mismatch.id))
                      for n in HOSTILE_NAMES}
        assert all(mismatches.values()), mismatches
        org = s.scalar(select(PartyOrg.code).where(PartyOrg.name == HOSTILE_ORG_NAME))
        unit = s.scalar(select(OrgUnit.code).where(OrgUnit.name == HOSTILE_UNIT_NAME))
        assert org and unit
        unit_mismatch = s.scalar(select(Mismatch.id).where(Mismatch.rule == "uncovered_unit",
                                                            Mismatch.org_unit_code == unit))
        return {"persons": persons, "mismatches": mismatches, "org": org, "unit": unit, "unit_mismatch": unit_mismatch}


def pages(planted: dict[str, object]) -> list[str]:
    urls = ["/", "/mismatches", "/mismatches?state=all", "/mismatches?rule=branch_mismatch",
            "/mismatches?rule=join_date_conflict", "/mismatches?rule=uncovered_unit", "/coverage",
            "/people", "/orgs", f"/orgs/{planted['org']}", "/runs", "/runs/1", "/audit", "/exports"]
    urls += [f"/mismatches/{i}" for i in planted["mismatches"].values()]
    urls += [f"/people/{i}" for i in planted["persons"].values()]
    if planted["unit_mismatch"]:
        urls.append(f"/mismatches/{planted['unit_mismatch']}")
    return urls


def test_every_page_escapes_hostile_names(client, planted) -> None:
    problems, shown = [], set()
    for url in pages(planted):
        response = client.get(url)
        if response.status_code == 404 and url.split("?")[0] in ("/coverage", "/orgs", "/runs", "/audit", "/exports", "/people"):
            problems.append(f"{url}: page missing (404)")
            continue
        assert response.status_code == 200, f"{url}: {response.status_code}"
        page_html = response.get_data(as_text=True)
        for problem in injected(page_html):
            problems.append(f"{url}: {problem}")
        text = html.unescape(page_html)
        shown.update(n for n in (*HOSTILE_NAMES, HOSTILE_ORG_NAME, HOSTILE_UNIT_NAME) if n in text)
    assert not problems, "\n".join(problems)
    # the payloads were on the pages (escaped), so the check above looked at them
    assert set(HOSTILE_NAMES) <= shown, f"never shown: {set(HOSTILE_NAMES) - shown}"
    assert HOSTILE_ORG_NAME in shown and HOSTILE_UNIT_NAME in shown


def test_person_search_with_hostile_query_is_escaped(client) -> None:
    for query in HOSTILE_NAMES[:3]:
        response = client.get("/people", query_string={"q": query})
        assert response.status_code == 200
        assert not injected(response.get_data(as_text=True)), query


def test_hostile_reason_is_escaped_in_history_and_audit(cs: ConsoleSite, planted) -> None:
    """A person's own text (a resolution reason) is hostile data too."""
    client = make_app(cs).test_client()
    token = login(client, "admin")
    mismatch_id = planted["mismatches"][HOSTILE_NAMES[4]]
    reason = '</textarea><script>alert(1)</script>"><img src=x onerror=alert(1)>'
    response = client.post(f"/mismatches/{mismatch_id}/resolve",
                           data={"csrf_token": token, "action": "exception", "reason": reason})
    assert response.status_code in (200, 302, 303), response.status_code
    with cs.session() as s:
        assert s.get(Mismatch, mismatch_id).resolution_note == reason
    for url in (f"/mismatches/{mismatch_id}", "/audit", "/mismatches?state=ignored"):
        page_html = client.get(url).get_data(as_text=True)
        assert not injected(page_html), (url, injected(page_html))
    escaped = "&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    assert any(escaped in client.get(url).get_data(as_text=True) for url in (f"/mismatches/{mismatch_id}", "/audit")), \
        "the reason is shown (escaped) in the mismatch's history or the audit log"


def test_exports_carry_hostile_names_as_text(client, planted) -> None:
    """Exports are data, not HTML: names are kept verbatim, but a name that looks like a formula
    stays text (a spreadsheet must not run it)."""
    formula = next(n for n in HOSTILE_NAMES if n.startswith("="))
    response = client.get("/exports/mismatches.csv")
    assert response.status_code == 200
    assert response.mimetype in ("text/csv", "application/csv")
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    cells = {c for row in rows for c in row}
    assert "<script>alert(1)</script>" in cells
    assert formula not in cells and any(c.endswith(formula) and c != formula for c in cells), \
        "a formula-like name must be defused (prefixed) in CSV"
    book = load_workbook(io.BytesIO(client.get("/exports/mismatches.xlsx").data))
    values = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert not [c.coordinate for c in values if c.data_type == "f"], "no cell of an export may be a formula"
    assert any(isinstance(c.value, str) and c.value.endswith(formula) for c in values)
