"""The file connector: encodings, header detection below title rows, XLSX cells, JSON, paging."""
from __future__ import annotations

import csv
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from marshmallow import ValidationError
from openpyxl import Workbook

from connectors.base import SourceError
from connectors.files import FileConnector, FileSourceSchema, _records_from_rows
from connectors.registry import get_connector_class

HEADER = ["姓名", "性别", "公民身份号码", "人员类别", "入党日期", "所在党支部", "组织编码"]
ROWS = [
    ["张三", "男", "11010519491231002X", "正式党员", "1985-07-01", "第一党支部", "0012"],
    ["李四", "女", "110105198001010016", "预备党员", "2023-12-20", "第二党支部", "0100"],
]
TITLES = [["XX公司党员花名册", "", "", "", "", "", ""], ["导出时间：2024-05-01 10:00", "", "", "", "", "", ""]]


def connector(tmp_path: Path, kind: str = "party_members", **block: Any) -> FileConnector:
    config = FileSourceSchema().load({"connector": "file", "provides": [kind], **block})
    return FileConnector("roster", config, base_dir=tmp_path)


def read_records(conn: FileConnector, kind: str = "party_members") -> list[dict[str, Any]]:
    return [r for page in conn.read(kind) for r in page.records]


def write_csv(path: Path, rows: list[list[str]], encoding: str, delimiter: str = ",") -> Path:
    with path.open("w", encoding=encoding, newline="") as stream:
        csv.writer(stream, delimiter=delimiter).writerows(rows)
    return path


ZHANG = {"姓名": "张三", "性别": "男", "公民身份号码": "11010519491231002X", "人员类别": "正式党员",
         "入党日期": "1985-07-01", "所在党支部": "第一党支部", "组织编码": "0012"}


# --------------------------------------------------------------------------- CSV


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_csv_utf8_with_and_without_bom(tmp_path, encoding):
    write_csv(tmp_path / "roster.csv", [HEADER, *ROWS], encoding)
    records = read_records(connector(tmp_path, path="roster.csv"))

    assert records[0] == {**ZHANG, "_row": 2}
    assert [r["组织编码"] for r in records] == ["0012", "0100"]
    assert [r["_row"] for r in records] == [2, 3]


def test_gbk_csv_with_two_title_rows_above_the_header(tmp_path):
    rows = [*TITLES, HEADER, ROWS[0], ["", "", "", "", "", "", ""], ROWS[1]]
    write_csv(tmp_path / "党员花名册.csv", rows, "gbk")
    records = read_records(connector(tmp_path, path="党员花名册.csv"))

    assert records[0] == {**ZHANG, "_row": 4}
    # the fully empty row 5 is skipped, row numbers stay those of the file
    assert [(r["姓名"], r["_row"]) for r in records] == [("张三", 4), ("李四", 6)]


def test_cells_are_stripped_and_empty_cells_are_none(tmp_path):
    write_csv(tmp_path / "r.csv", [["姓名 ", "手机号码", "备注", "备注"],
                                   ["  王五 ", "", " 调入 ", "x"],
                                   ["赵六", "13800000000", "", "", "extra"]], "utf-8")
    records = read_records(connector(tmp_path, path="r.csv"))
    assert records == [
        {"姓名": "王五", "手机号码": None, "备注": "调入", "备注_2": "x", "_row": 2},
        {"姓名": "赵六", "手机号码": "13800000000", "备注": None, "备注_2": None,
         "column_5": "extra", "_row": 3},
    ]


def test_header_found_where_a_column_is_unnamed_and_data_is_all_text(tmp_path):
    # The data row names more cells than the header; the header still comes first within reach.
    rows = [["XX公司党员花名册"] * 5, ["姓名", "性别", "民族", "", "所在党支部"],
            ["张三", "男", "汉族", "正式党员", "第一党支部"]]
    write_csv(tmp_path / "r.csv", rows, "utf-8")
    assert read_records(connector(tmp_path, path="r.csv")) == [
        {"姓名": "张三", "性别": "男", "民族": "汉族", "column_4": "正式党员",
         "所在党支部": "第一党支部", "_row": 3}]


def test_header_overrides_when_a_note_row_looks_more_like_a_header(tmp_path):
    rows = [["说明", "本表", "由系统", "自动生成", "请勿", "修改", "谢谢", "合作"], HEADER, ROWS[0]]
    write_csv(tmp_path / "r.csv", rows, "utf-8")
    auto = read_records(connector(tmp_path, path="r.csv"))
    assert "说明" in auto[0]  # the auto rule picks the wordier row…

    for override in ({"header_contains": ["姓名", "公民身份号码"]}, {"header_row": 2}):
        records = read_records(connector(tmp_path, path="r.csv", **override))
        assert records == [{**ZHANG, "_row": 3}]

    with pytest.raises(SourceError) as caught:
        read_records(connector(tmp_path, path="r.csv", header_contains=["工号"]))
    assert caught.value.error_class == "config" and "工号" in caught.value.message


def test_utf16_tab_separated_excel_unicode_text(tmp_path):
    write_csv(tmp_path / "r.txt", [HEADER, ROWS[0]], "utf-16", delimiter="\t")
    assert read_records(connector(tmp_path, path="r.txt")) == [{**ZHANG, "_row": 2}]


def test_semicolon_list_fields_do_not_fool_delimiter_detection(tmp_path):
    write_csv(tmp_path / "orgs.csv", [["code", "name", "covers"],
                                      ["B01", "第一党支部", "D01;D02;D03;D04;D05"]], "utf-8")
    (record,) = read_records(connector(tmp_path, "party_orgs", path="orgs.csv"), "party_orgs")
    assert record["covers"] == "D01;D02;D03;D04;D05"


def test_large_csv_is_paged(tmp_path):
    rows = [["employee_no", "period", "grade"]] + [[f"{n:06d}", "2023", "优秀"] for n in range(2500)]
    write_csv(tmp_path / "perf.csv", rows, "utf-8")
    pages = list(connector(tmp_path, "performance", path="perf.csv").read("performance"))

    assert [len(p.records) for p in pages] == [1000, 1000, 500]
    assert [p.info["rows"] for p in pages] == [[2, 1001], [1002, 2001], [2002, 2501]]
    assert pages[0].records[0]["employee_no"] == "000000"
    assert pages[2].records[-1] == {"employee_no": "002499", "period": "2023", "grade": "优秀",
                                    "_row": 2501}


def test_rows_are_streamed_not_collected():
    def endless():
        yield 1, ["姓名", "工号"]
        number = 1
        while True:
            number += 1
            yield number, [f"员工{number}", f"{number:06d}"]

    records = _records_from_rows(endless(), header_row=None, header_contains=None, where="x")
    first = [next(records) for _ in range(3)]
    assert first[2] == {"姓名": "员工4", "工号": "000004", "_row": 4}


# --------------------------------------------------------------------------- XLSX


def write_roster_xlsx(path: Path) -> Path:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "封面"
    sheet["A1"] = "请看第二页"
    roster = workbook.create_sheet("花名册")
    roster.append(["XX公司党员花名册"])
    roster.merge_cells("A1:G1")
    roster.append(["导出时间：2024-05-01"])
    roster.merge_cells("A2:G2")
    roster.append(["姓名", "公民身份号码", "出生日期", "入党\n日期", "组织编码", "工号", "绩效分"])
    roster.append(["张三", "11010519491231002X", datetime(1949, 12, 31), date(1985, 7, 1), "0012",
                   1001, 85.5])
    roster.append([None] * 7)
    roster.append(["李四", "110105198001010016", datetime(1980, 1, 1, 8, 30), None, "0100",
                   1002.0, 90])
    workbook.save(path)
    return path


def test_xlsx_with_title_rows_merged_cells_dates_and_ids(tmp_path):
    write_roster_xlsx(tmp_path / "花名册.xlsx")
    records = read_records(connector(tmp_path, path="花名册.xlsx", sheet="花名册"))

    assert records == [
        {"姓名": "张三", "公民身份号码": "11010519491231002X", "出生日期": "1949-12-31",
         "入党日期": "1985-07-01", "组织编码": "0012", "工号": "1001", "绩效分": "85.5", "_row": 4},
        {"姓名": "李四", "公民身份号码": "110105198001010016", "出生日期": "1980-01-01 08:30:00",
         "入党日期": None, "组织编码": "0100", "工号": "1002", "绩效分": "90", "_row": 6},
    ]
    assert read_records(connector(tmp_path, path="花名册.xlsx", sheet=1)) == records


def test_xlsx_unknown_sheet_lists_the_sheets(tmp_path):
    write_roster_xlsx(tmp_path / "r.xlsx")
    with pytest.raises(SourceError) as caught:
        read_records(connector(tmp_path, path="r.xlsx", sheet="党员"))
    assert caught.value.error_class == "config" and "封面, 花名册" in caught.value.message


# --------------------------------------------------------------------------- JSON


def test_json_list_and_records_path(tmp_path):
    staff = [{"employee_no": "E1", "name": "张三"}, {"employee_no": "E2", "name": "李四"}]
    (tmp_path / "a.json").write_text(json.dumps(staff, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps({"data": {"list": staff}}), encoding="utf-8")

    expected = [{**staff[0], "_row": 1}, {**staff[1], "_row": 2}]
    assert read_records(connector(tmp_path, "staff", path="a.json"), "staff") == expected
    assert read_records(connector(tmp_path, "staff", path="b.json", records_path="data.list"),
                        "staff") == expected
    with pytest.raises(SourceError) as caught:
        read_records(connector(tmp_path, "staff", path="b.json"), "staff")
    assert caught.value.error_class == "protocol" and "set records_path" in caught.value.message


def test_jsonl_skips_blank_lines_and_reports_bad_lines(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"employee_no": "E1"}\n\n{"employee_no": "E2"}\n',
                                      encoding="utf-8")
    assert read_records(connector(tmp_path, "staff", path="s.jsonl"), "staff") == [
        {"employee_no": "E1", "_row": 1}, {"employee_no": "E2", "_row": 3}]

    (tmp_path / "bad.jsonl").write_text('{"employee_no": "E1"}\n{"employee_no": \n', encoding="utf-8")
    with pytest.raises(SourceError) as caught:
        read_records(connector(tmp_path, "staff", path="bad.jsonl"), "staff")
    assert caught.value.error_class == "protocol" and "line 2" in caught.value.message


# --------------------------------------------------------------------------- config and errors


def test_missing_file_is_config_error_naming_the_path(tmp_path):
    conn = connector(tmp_path, path="exports/党员花名册.xlsx")
    with pytest.raises(SourceError) as caught:
        list(conn.read("party_members"))
    err = caught.value
    assert (err.error_class, err.source, err.kind) == ("config", "roster", "party_members")
    assert str(tmp_path / "exports" / "党员花名册.xlsx") in err.message
    with pytest.raises(SourceError):
        conn.check()


def test_files_per_kind(tmp_path):
    write_csv(tmp_path / "orgs.csv", [["code", "name"], ["B01", "第一党支部"]], "utf-8")
    write_csv(tmp_path / "members.csv", [HEADER, ROWS[1]], "gb18030")
    config = FileSourceSchema().load({
        "connector": "file", "provides": ["party_orgs", "party_members"],
        "files": {"party_orgs": "orgs.csv", "party_members": str(tmp_path / "members.csv")}})
    conn = get_connector_class("file")("p", config, base_dir=tmp_path)

    assert read_records(conn, "party_orgs") == [{"code": "B01", "name": "第一党支部", "_row": 2}]
    assert read_records(conn, "party_members")[0]["姓名"] == "李四"
    with pytest.raises(SourceError) as caught:
        list(conn.read("staff"))
    assert caught.value.error_class == "config"


def test_schema_rejects_ambiguous_blocks():
    base = {"connector": "file", "provides": ["staff", "org_units"]}
    with pytest.raises(ValidationError) as caught:
        FileSourceSchema().load({**base, "path": "a.csv"})
    assert set(caught.value.messages) == {"provides"}
    with pytest.raises(ValidationError) as caught:
        FileSourceSchema().load({**base, "files": {"staff": "a.csv"}})
    assert set(caught.value.messages) == {"files"}
    with pytest.raises(ValidationError) as caught:
        FileSourceSchema().load({"connector": "file", "provides": ["staff"], "path": "a.csv",
                                 "encoding": "klingon"})
    assert caught.value.messages == {"encoding": ["unknown encoding 'klingon'"]}
