"""Activities entered and imported in the officers' console (issue 7, item 3):
`/orgs/<code>/activities` lists a party org's organizational life; admins and officers (within
their subtree) add one or import a CSV / XLSX, all or nothing; what they enter counts for
`meetings_missing` like synced activities, and syncs leave it alone."""
from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from records.models import Activity, AuditLog, Change, Mismatch, PartyOrg
from records.queries import mismatch_state_filter
from sync.config import parse_config
from sync.rules.engine import RuleSet
from tests.conftest import TEST_SECRET
from tests.web.console_sites import ConsoleSite, build_console_site, fingerprint, login, make_app

TODAY = dt.date(2025, 7, 15)  # Q2 2025 is the last completed quarter


@pytest.fixture(scope="module")
def cs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleSite]:
    folder = tmp_path_factory.mktemp("activities")
    site = build_console_site(folder / "src", f"sqlite:///{folder / 'console.db'}", staff=300, seed=31)
    yield site
    site.engine.dispose()


@pytest.fixture(scope="module")
def app(cs: ConsoleSite):
    return make_app(cs)


@pytest.fixture(scope="module")
def branches(cs: ConsoleSite) -> dict[str, str]:
    """Active branches: two inside the officer's subtree, one outside."""
    with cs.session() as s:
        def pick(codes: list[str], n: int) -> list[str]:
            return list(s.scalars(select(PartyOrg.code).where(
                PartyOrg.code.in_(codes), PartyOrg.kind == "branch", PartyOrg.active.is_(True))
                .order_by(PartyOrg.code).limit(n)))
        inside = pick(cs.officer_codes, 2)
        outside = pick(cs.other_codes, 1)
    assert len(inside) == 2 and outside
    return {"a": inside[0], "b": inside[1], "out": outside[0]}


def _count(cs: ConsoleSite, model, *where) -> int:  # noqa: ANN001
    with cs.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _activities(cs: ConsoleSite, code: str) -> list[Activity]:
    with cs.session() as s:
        return list(s.scalars(select(Activity).where(Activity.party_org_code == code).order_by(Activity.id)))


def _state(cs: ConsoleSite) -> tuple[int, int, int]:
    return (_count(cs, Activity), _count(cs, AuditLog, AuditLog.action.like("activity.%")),
            _count(cs, Change, Change.entity == "activity"))


def _rules(cs: ConsoleSite) -> None:
    with cs.session() as s, s.begin():
        RuleSet.from_config({"settings": {"today": TODAY.isoformat()}}).evaluate(s, None, "test")


def _open_finding(cs: ConsoleSite, code: str, type_: str, period: str) -> bool:
    with cs.session() as s:
        return s.scalar(select(func.count()).select_from(Mismatch).where(
            Mismatch.rule == "meetings_missing", mismatch_state_filter("open"),
            Mismatch.subject_key == f"party_org:{code}|{type_}|{period}")) == 1


def _form(token: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": token, "type": "member_meeting", "held_on": "2025-05-20", "attendees": "9",
            "expected": "12", "lecturer": ""} | fields


# --- add one, and the rules see it -------------------------------------------------------------


def test_add_via_form_writes_audit_change_and_counts_for_meetings_missing(app, cs: ConsoleSite, branches) -> None:
    a, b = branches["a"], branches["b"]
    client = app.test_client()
    token = login(client, "officer")
    # Branch b holds a theme day (entered here too), so organizational life is tracked at all.
    response = client.post(f"/orgs/{b}/activities", data=_form(token, type="theme_day", held_on="2025-06-01",
                                                                  expected=""))
    assert response.status_code == 303, response.get_data(as_text=True)
    _rules(cs)
    assert _open_finding(cs, a, "member_meeting", "2025Q2")  # branch a held no member meeting in Q2

    before = _state(cs)
    response = client.post(f"/orgs/{a}/activities",
                           data=_form(token, type="支部党员大会", held_on="2025-05-20", lecturer="张三"))
    assert response.status_code == 303
    assert _state(cs) == (before[0] + 1, before[1] + 1, before[2] + 1)
    (activity,) = _activities(cs, a)
    assert (activity.type, activity.held_on, activity.attendees, activity.expected, activity.lecturer, activity.active) \
        == ("member_meeting", dt.date(2025, 5, 20), 9, 12, "张三", True)
    assert activity.activity_key.startswith("console:") and set(activity.provenance.values()) == {"console"}
    with cs.session() as s:
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "activity.create")
                          .order_by(AuditLog.id.desc()).limit(1)).one()
        change = s.scalars(select(Change).where(Change.entity == "activity", Change.entity_id == activity.id)).one()
    assert audit.actor == "officer" and audit.target_id == str(activity.id)
    assert audit.details["party_org_code"] == a and audit.details["type"] == "member_meeting"
    assert audit.details["held_on"] == "2025-05-20" and audit.details["attendees"] == 9
    assert change.op == "create" and change.actor == "officer" and change.changed["type"] == [None, "member_meeting"]

    page = client.get(f"/orgs/{a}/activities").get_data(as_text=True)
    assert "支部党员大会" in page and "2025-05-20" in page and "控制台录入" in page and "张三" in page

    _rules(cs)
    assert not _open_finding(cs, a, "member_meeting", "2025Q2")


# --- validation: clear messages, nothing written ------------------------------------------------


@pytest.mark.parametrize(("fields", "field_label", "message"), [
    ({"held_on": "2025-02-30"}, "日期", "不是有效的日期"),
    ({"held_on": ""}, "日期", "请填写日期"),
    ({"attendees": "13", "expected": "12"}, "出席人数", "出席人数不能多于应到人数"),
    ({"type": "开会"}, "类型", "不是已知的活动类型"),
    ({"attendees": "-1"}, "出席人数", "应为 0 或正整数"),
    ({"attendees": "abc"}, "出席人数", "应为 0 或正整数"),
])
def test_validation_errors_write_nothing(app, cs: ConsoleSite, branches, fields, field_label, message) -> None:
    client = app.test_client()
    token = login(client, "officer")
    before, prints = _state(cs), fingerprint(cs.engine)
    response = client.post(f"/orgs/{branches['a']}/activities", data=_form(token, **fields))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f"{field_label}: " in page and message in page
    assert _state(cs) == before and fingerprint(cs.engine) == prints


def test_validation_message_in_english(app, cs: ConsoleSite, branches) -> None:
    client = app.test_client()
    token = login(client, "officer")
    client.get("/lang/en")
    response = client.post(f"/orgs/{branches['a']}/activities", data=_form(token, attendees="20", expected="3"))
    assert response.status_code == 400
    assert "Attendees: more present than expected" in response.get_data(as_text=True)


# --- import -------------------------------------------------------------------------------------


def _xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _upload(client, code: str, token: str, data: bytes, name: str):  # noqa: ANN001
    return client.post(f"/orgs/{code}/activities/import", data={"csrf_token": token, "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def test_import_csv_good_utf8_bom(app, cs: ConsoleSite, branches) -> None:
    code = branches["b"]
    client = app.test_client()
    token = login(client, "officer")
    before = _state(cs)
    text = ("类型,日期,出席人数,应到人数,主讲人\n"
            "支委会,2025-06-03,5,5,\n"
            "党课,2025/6/12,20,22,李四\n"
            "\n"
            "组织生活会,2025.1.15,18,,\n")
    response = _upload(client, code, token, b"\xef\xbb\xbf" + text.encode("utf-8"), "activities.csv")
    assert response.status_code == 303, response.get_data(as_text=True)
    assert _state(cs) == (before[0] + 3, before[1] + 1, before[2] + 3)
    rows = {a.type: a for a in _activities(cs, code)}
    assert rows["committee_meeting"].held_on == dt.date(2025, 6, 3)
    assert rows["party_lecture"].lecturer == "李四" and rows["party_lecture"].expected == 22
    assert rows["org_life_meeting"].expected is None
    with cs.session() as s:
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "activity.import")
                          .order_by(AuditLog.id.desc()).limit(1)).one()
    assert audit.details["count"] == 3 and audit.target_id == code and audit.actor == "officer"
    assert "已导入活动" in client.get(f"/orgs/{code}/activities").get_data(as_text=True)


def test_import_csv_gb18030_with_english_headers(app, cs: ConsoleSite, branches) -> None:
    client = app.test_client()
    token = login(client, "admin")
    before = _state(cs)
    text = "type,held_on,attendees,expected,lecturer\n主题党日,2025-04-08,10,12,王五\n"
    response = _upload(client, branches["b"], token, text.encode("gb18030"), "a.csv")
    assert response.status_code == 303
    assert _state(cs) == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert any(a.lecturer == "王五" for a in _activities(cs, branches["b"]))


def test_import_xlsx_good(app, cs: ConsoleSite, branches) -> None:
    client = app.test_client()
    token = login(client, "officer")
    before = _state(cs)
    data = _xlsx([["类型", "日期", "出席人数", "应到人数", "主讲人"],
                  ["民主评议党员", dt.datetime(2024, 12, 20), 19, 20, None],
                  ["支部党员大会", "2025-03-28", 11.0, 15, None]])
    response = _upload(client, branches["b"], token, data, "activities.xlsx")
    assert response.status_code == 303, response.get_data(as_text=True)
    assert _state(cs) == (before[0] + 2, before[1] + 1, before[2] + 2)
    held = {(a.type, a.held_on, a.attendees) for a in _activities(cs, branches["b"])}
    assert ("democratic_review", dt.date(2024, 12, 20), 19) in held
    assert ("member_meeting", dt.date(2025, 3, 28), 11) in held


def _listed_rows(page: str) -> list[int]:
    table = page.split('id="import-errors"', 1)[1].split("</table>", 1)[0]
    return [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', table)]


def test_import_csv_bad_writes_nothing_and_lists_rows(app, cs: ConsoleSite, branches) -> None:
    client = app.test_client()
    token = login(client, "officer")
    before, prints = _state(cs), fingerprint(cs.engine)
    text = ("类型,日期,出席人数,应到人数\n"
            "支委会,2025-06-03,5,5\n"        # row 2: fine
            "开会,2025-06-04,5,5\n"          # row 3: unknown type
            "党课,2025-13-01,5,5\n"          # row 4: bad date
            "主题党日,2025-06-05,9,8\n")     # row 5: more present than expected
    response = _upload(client, branches["a"], token, text.encode("utf-8"), "bad.csv")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert _listed_rows(page) == [3, 4, 5]
    assert "类型: 不是已知的活动类型" in page and "日期: 不是有效的日期" in page and "出席人数不能多于应到人数" in page
    assert _state(cs) == before and fingerprint(cs.engine) == prints


def test_import_xlsx_bad_writes_nothing_and_lists_rows(app, cs: ConsoleSite, branches) -> None:
    client = app.test_client()
    token = login(client, "officer")
    before = _state(cs)
    data = _xlsx([["type", "held_on", "attendees", "expected"],
                  ["theme_day", "2025-06-05", 3, 8],
                  ["theme_day", None, 3, 8],
                  ["theme_day", "2025-06-06", 2.5, 8]])
    response = _upload(client, branches["a"], token, data, "bad.xlsx")
    assert response.status_code == 400
    assert _listed_rows(response.get_data(as_text=True)) == [3, 4]
    assert _state(cs) == before


def test_import_file_problems(app, cs: ConsoleSite, branches) -> None:
    client = app.test_client()
    token = login(client, "officer")
    before = _state(cs)
    missing_column = _upload(client, branches["a"], token, "类型,日期\n党课,2025-06-01\n".encode(), "x.csv")
    assert missing_column.status_code == 400 and "缺少必需的列" in missing_column.get_data(as_text=True)
    not_xlsx = _upload(client, branches["a"], token, b"PK\x03\x04garbage", "x.xlsx")
    assert not_xlsx.status_code == 400 and "无法读取文件" in not_xlsx.get_data(as_text=True)
    no_file = client.post(f"/orgs/{branches['a']}/activities/import", data={"csrf_token": token})
    assert no_file.status_code == 400
    assert _state(cs) == before


# --- who may ------------------------------------------------------------------------------------


def test_officer_outside_subtree_gets_404(app, cs: ConsoleSite, branches) -> None:
    client = app.test_client()
    token = login(client, "officer")
    before = _state(cs)
    out = branches["out"]
    assert client.get(f"/orgs/{out}/activities").status_code == 404
    assert client.post(f"/orgs/{out}/activities", data=_form(token)).status_code == 404
    csv_ok = "类型,日期,出席人数\n党课,2025-06-01,3\n".encode()
    assert _upload(client, out, token, csv_ok, "x.csv").status_code == 404
    assert _state(cs) == before
    assert client.get(f"/orgs/{branches['a']}/activities").status_code == 200


def test_auditor_reads_but_post_is_403(app, cs: ConsoleSite, branches) -> None:
    client = app.test_client()
    token = login(client, "auditor")
    before = _state(cs)
    page = client.get(f"/orgs/{branches['a']}/activities")
    assert page.status_code == 200 and 'id="activity-add"' not in page.get_data(as_text=True)
    assert client.post(f"/orgs/{branches['a']}/activities", data=_form(token)).status_code == 403
    csv_ok = "类型,日期,出席人数\n党课,2025-06-01,3\n".encode()
    assert _upload(client, branches["a"], token, csv_ok, "x.csv").status_code == 403
    assert _state(cs) == before


def test_post_without_csrf_is_400(app, cs: ConsoleSite, branches) -> None:
    client = app.test_client()
    login(client, "officer")
    before = _state(cs)
    form = _form("")
    form.pop("csrf_token")
    assert client.post(f"/orgs/{branches['a']}/activities", data=form).status_code == 400
    response = client.post(f"/orgs/{branches['a']}/activities/import",
                           data={"file": (io.BytesIO("类型,日期,出席人数\n党课,2025-06-01,3\n".encode()), "x.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert _state(cs) == before


# --- syncs leave console activities alone -------------------------------------------------------


def test_resync_keeps_console_activities(app, cs: ConsoleSite, branches, tmp_path: Path) -> None:
    """A full pull of every source — one of them an activities file that drops a row — deactivates
    the dropped synced activity and nothing entered in the console."""
    client = app.test_client()
    token = login(client, "officer")
    assert client.post(f"/orgs/{branches['a']}/activities",
                       data=_form(token, type="party_lecture", held_on="2025-06-10")).status_code == 303
    console_keys = {a.activity_key for a in _activities(cs, branches["a"]) + _activities(cs, branches["b"])}
    assert console_keys and all(k.startswith("console:") for k in console_keys)

    path = tmp_path / "activities.csv"
    path.write_text("id,party_org_code,type,held_on,attendees,expected\n"
                    f"S1,{branches['a']},主题党日,2025-06-20,8,10\n"
                    f"S2,{branches['a']},支委会,2025-06-21,3,3\n", encoding="utf-8")
    extra = parse_config({"database": "sqlite://", "secret_key": TEST_SECRET,
                          "sources": {"life": {"connector": "file", "path": str(path), "provides": ["activities"]}}},
                         path=None).sources["life"]
    config = cs.site.runtime.config
    extra.priority = len(config.sources)
    config.sources["life"] = extra
    guard = dict(config.guard)
    config.guard["max_deactivate_ratio"] = 1
    try:
        assert cs.site.sync(full=True).status == "succeeded"
        path.write_text("id,party_org_code,type,held_on,attendees,expected\n"
                        f"S1,{branches['a']},主题党日,2025-06-20,8,10\n", encoding="utf-8")
        result = cs.site.sync(full=True)
        assert result.status == "succeeded"
        assert result.counts["activities"]["deactivated"] == 1
    finally:
        del config.sources["life"]
        config.guard.clear()
        config.guard.update(guard)
    with cs.session() as s:
        rows = {a.activity_key: a for a in s.scalars(select(Activity))}
    assert rows["S1"].active and not rows["S2"].active
    assert all(rows[k].active for k in console_keys)
    assert all(set(rows[k].provenance.values()) == {"console"} for k in console_keys)
    page = client.get(f"/orgs/{branches['a']}/activities").get_data(as_text=True)
    assert "life" in page and "控制台录入" in page
