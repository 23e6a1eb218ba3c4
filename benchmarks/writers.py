"""Write an enterprise as the demo's source files, its dualline.yaml and its answer key.

The files look like what real systems export (reference/sources.md): an OA export as JSON with
Chinese column names and a few date spellings; the party org list as XLSX in canonical columns;
the national roster as GB18030 CSV with two title rows above the header; appraisals as UTF-8 CSV.
"""
from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpyxl import Workbook

from benchmarks import vocab
from benchmarks.answer_key import Record, parse_iso_date

if TYPE_CHECKING:
    from benchmarks.enterprise import Enterprise

PARTY_ORG_COLUMNS = ("code", "name", "kind", "parent_code", "covers", "secretary", "elected_on",
                     "term_years", "has_committee", "retirees")
ROSTER_COLUMNS = ("姓名", "性别", "公民身份号码", "民族", "出生日期", "学历", "人员类别", "入党日期",
                  "转为正式党员日期", "所在党支部", "工作岗位", "手机号码", "党籍状态")
PERFORMANCE_COLUMNS = ("employee_no", "period", "grade", "score", "score_max")
EXPORTED_AT = "2026-10-31"

# Where each source's files sit inside the demo folder (dualline.yaml names the same paths).
OA_DEPARTMENTS = "oa/departments.json"
OA_STAFF = "oa/staff.json"
PARTY_ORGS = "party/党组织.xlsx"
ROSTER = "party/党员花名册.csv"
PERFORMANCE = "performance/绩效.csv"
ANSWER_KEY = "expected.json"


class _DateSpeller:
    """Spells dates as OA clerks leave them: mostly ISO, sometimes 2019/3/5 or 2019年3月5日.

    An invalid date (planted noise) is written as it stands, so the mapping sees it.
    """

    def __init__(self, seed: int, odd_share: float) -> None:
        self.rng = random.Random(seed)
        self.odd_share = odd_share

    def __call__(self, value: str | None) -> str:
        if not value:
            return ""
        day = parse_iso_date(value)
        if day is None or self.rng.random() >= self.odd_share:
            return value
        return f"{day.year}/{day.month}/{day.day}" if self.rng.random() < 0.6 else f"{day.year}年{day.month}月{day.day}日"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def oa_departments(enterprise: Enterprise) -> list[Record]:
    """org_units as the OA export spells them."""
    return [{
        "部门编码": u["code"], "部门名称": u["name"], "上级部门编码": _text(u["parent_code"]),
        "部门类型": vocab.UNIT_KIND_NAMES[u["kind"]], "状态": vocab.UNIT_STATUS_NAMES[u["status"]],
        "负责人工号": _text(u["manager_employee_no"]),
    } for u in enterprise.org_units]


def oa_staff(enterprise: Enterprise) -> list[Record]:
    """staff as the OA export spells them (unknown spellings, i.e. noise, pass through)."""
    spell = _DateSpeller(enterprise.params.get("seed", 0), odd_share=0.15)
    return [{
        "工号": s["employee_no"], "姓名": s["name"], "性别": vocab.GENDER_NAMES[s["gender"]],
        "出生日期": spell(s["birth_date"]), "民族": vocab.ETHNIC_NAMES[s["ethnicity"]],
        "学历": vocab.EDUCATION_NAMES_OA[s["education"]], "身份证号": s["id_number"], "手机号": s["mobile"],
        "部门编码": s["org_unit_code"], "岗位": s["position"],
        "人员状态": vocab.EMPLOYMENT_NAMES[s["employment_status"]], "入职日期": spell(s["hired_on"]),
        "政治面貌": vocab.POLITICAL_NAMES.get(s["political_status"], s["political_status"]),
        "入党日期": spell(s["party_joined_on"]),
    } for s in enterprise.staff]


def roster_rows(enterprise: Enterprise) -> Iterable[list[str]]:
    """The national roster's data rows, column order `ROSTER_COLUMNS`."""
    for m in enterprise.party_members:
        yield [
            m["name"], vocab.GENDER_NAMES[m["gender"]], _text(m["id_number"]),
            vocab.ETHNIC_NAMES[m["ethnicity"]], _text(m["birth_date"]),
            vocab.EDUCATION_NAMES_ROSTER[m["education"]], vocab.MEMBER_CATEGORY_NAMES[m["category"]],
            _text(m["joined_on"]), _text(m["full_member_on"]), enterprise.party_org_name(m["party_org_code"]),
            _text(m["position"]), _text(m["mobile"]), vocab.MEMBER_STATUS_NAMES[m["status"]],
        ]


def party_org_row(org: Record) -> list[Any]:
    """One party org in canonical columns (covers joined by ';', booleans as true/false)."""
    values = {**org, "covers": ";".join(org["covers"]),
              "has_committee": str(bool(org["has_committee"])).lower(), "retirees": str(bool(org["retirees"])).lower()}
    return [values[c] for c in PARTY_ORG_COLUMNS]


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _write_csv(path: Path, rows: Iterable[Iterable[Any]], encoding: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as handle:
        csv.writer(handle).writerows(rows)


def write_demo_sources(enterprise: Enterprise, folder: str | Path) -> Record:
    """Write every source file and expected.json into `folder`; return the answer key."""
    folder = Path(folder)
    _write_json(folder / OA_DEPARTMENTS, oa_departments(enterprise))
    _write_json(folder / OA_STAFF, oa_staff(enterprise))

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("党组织")
    sheet.append(list(PARTY_ORG_COLUMNS))
    for org in enterprise.party_orgs:
        sheet.append(party_org_row(org))
    (folder / PARTY_ORGS).parent.mkdir(parents=True, exist_ok=True)
    workbook.save(folder / PARTY_ORGS)

    # Two title rows (merged cells in the original sheet, padded cells in CSV) above the header.
    pad = [""] * (len(ROSTER_COLUMNS) - 1)
    titles = [[f"{enterprise.group_name}党员花名册", *pad], [f"导出时间：{EXPORTED_AT}", *pad]]
    _write_csv(folder / ROSTER, [*titles, ROSTER_COLUMNS, *roster_rows(enterprise)], "gb18030")
    _write_csv(folder / PERFORMANCE, [PERFORMANCE_COLUMNS, *([p[c] for c in PERFORMANCE_COLUMNS]
                                                             for p in enterprise.performance)], "utf-8")
    key = {"generator": enterprise.params, **enterprise.answer_key()}
    _write_json(folder / ANSWER_KEY, key)
    return key


CONFIG = f"""\
# The demo enterprise (written by benchmarks.writers.write_config). Paths are relative to this file.
database: sqlite:///dualline.db
sources:
  oa:                                   # OA export: departments and staff, Chinese column names
    connector: file
    files:
      org_units: {OA_DEPARTMENTS}
      staff: {OA_STAFF}
    mapping: oa-export
    provides: [org_units, staff]
  party-orgs:                           # committees, branches and the units each branch covers
    connector: file
    path: {PARTY_ORGS}
    provides: [party_orgs]
    mapping: canonical
  roster:                               # national party-member roster export (GB18030 CSV)
    connector: file
    path: {ROSTER}
    provides: [party_members]
    mapping: national-roster
  performance:
    connector: file
    path: {PERFORMANCE}
    provides: [performance]
    mapping: canonical
guard:
  max_deactivate_ratio: 0.2
  max_deactivate: 200
"""


def write_config(folder: str | Path) -> Path:
    """Write the demo's dualline.yaml into `folder` and return its path."""
    path = Path(folder) / "dualline.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG, encoding="utf-8")
    return path
