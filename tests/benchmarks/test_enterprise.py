"""The synthetic enterprise, its answer key, the demo writers and the fake REST source."""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest
import requests
import yaml
from openpyxl import load_workbook

from benchmarks.answer_key import RULES, evaluate, expected_branches, id_number_problem
from benchmarks.enterprise import Enterprise, generate
from benchmarks.fake_source import FakeSource
from benchmarks.writers import ROSTER, ROSTER_COLUMNS, write_config, write_demo_sources


@pytest.fixture(scope="module")
def demo() -> Enterprise:
    return generate(staff=2000, seed=1)


@pytest.fixture(scope="module")
def key(demo: Enterprise) -> dict:
    return demo.answer_key()


def _subjects(key: dict, rule: str) -> list[dict]:
    return [item["subject"] for item in key["mismatches"] if item["rule"] == rule]


def test_generation_is_deterministic_per_seed() -> None:
    first, second, other = generate(staff=500, seed=7), generate(staff=500, seed=7), generate(staff=500, seed=8)
    for kind in ("org_units", "staff", "party_orgs", "party_members", "performance"):
        assert first.records(kind) == second.records(kind)
    assert first.answer_key() == second.answer_key()
    assert first.staff != other.staff


def test_sizes_follow_the_staff_count(demo: Enterprise) -> None:
    kinds = Counter(u["kind"] for u in demo.org_units)
    assert kinds["company"] == 4 and kinds["department"] >= 60 and kinds["team"] > 0
    branches = [o for o in demo.party_orgs if o["kind"] == "branch"]
    assert 30 <= len(branches) <= 70
    assert sum(o["retirees"] for o in branches) == 4
    assert {o["kind"] for o in demo.party_orgs} >= {"committee", "general_branch", "branch"}
    assert all(o["term_years"] == 3 and o["elected_on"] for o in demo.party_orgs)


def test_id_numbers_are_valid_except_the_planted_noise(demo: Enterprise, key: dict) -> None:
    broken = {q["key"]["employee_no"] for q in key["quarantined"] if q["reason"] == "invalid_id_number"}
    assert len(broken) >= 2
    for s in demo.staff:
        problem = id_number_problem(s["id_number"], s["birth_date"], s["gender"])
        assert (problem is not None) == (s["employee_no"] in broken), s
    assert any(s["id_number"].endswith("X") for s in demo.staff)
    assert len({s["id_number"] for s in demo.staff}) == len(demo.staff)
    assert all(len(s["mobile"]) == 11 and s["mobile"].startswith("1") for s in demo.staff)


def test_full_names_collide_as_in_real_life(demo: Enterprise) -> None:
    assert any(n > 1 for n in Counter(s["name"] for s in demo.staff).values())


def test_every_rule_is_planted_at_least_three_times(key: dict) -> None:
    for rule in RULES:
        assert key["counts"][rule] >= 3, rule
    reasons = Counter(q["reason"] for q in key["quarantined"])
    assert set(reasons) == {"invalid_id_number", "unknown_code", "invalid_date", "unknown_party_org"}


def test_unplanted_enterprise_is_consistent() -> None:
    clean = generate(staff=1500, seed=4, plant=False).answer_key()
    assert clean["mismatches"] == [] and clean["quarantined"] == []


def test_ambiguous_rows_leave_their_person_without_membership(demo: Enterprise, key: dict) -> None:
    ambiguous = _subjects(key, "ambiguous_match")
    assert any(s["birth_date"] is None for s in ambiguous) and any(s["birth_date"] for s in ambiguous)
    missing = {s["label"] for s in _subjects(key, "missing_membership")}
    assert {s["label"] for s in ambiguous} <= missing
    for subject in ambiguous:  # a row without a birth date is shared by two staff names
        if subject["birth_date"] is None:
            assert sum(s["name"] == subject["label"] for s in demo.staff) >= 2


def test_subjects_are_identified_as_the_contract_says(key: dict) -> None:
    for item in key["mismatches"]:
        subject = item["subject"]
        if item["rule"] == "uncovered_unit":
            assert subject["type"] == "org_unit" and subject["code"]
        elif item["rule"] == "ambiguous_match":
            assert "employee_no" not in subject and "id_number" not in subject
        else:
            assert subject["type"] == "person" and (subject.get("employee_no") or subject.get("id_number"))
    # Orphans include roster rows of people with no staff record at all (keyed by ID number).
    assert any("id_number" in s for s in _subjects(key, "orphan_membership"))


def test_oracle_follows_nearest_covering_branch() -> None:
    units = [{"code": "C", "parent_code": None}, {"code": "D", "parent_code": "C"},
             {"code": "T", "parent_code": "D"}, {"code": "U", "parent_code": "C"}]
    orgs = [{"code": "P", "kind": "committee", "covers": ["C"]}, {"code": "B1", "kind": "branch", "covers": ["D"]},
            {"code": "B2", "kind": "branch", "covers": ["T"]}]
    assert expected_branches(units, orgs) == {"C": None, "D": "B1", "T": "B2", "U": None}


def test_oracle_quarantines_before_matching() -> None:
    person = {"employee_no": "1", "name": "王伟", "gender": "1", "birth_date": "1990-01-01",
              "id_number": "110101199001010010", "org_unit_code": "D", "employment_status": "active",
              "political_status": "01", "party_joined_on": "2015-01-01"}
    assert id_number_problem(person["id_number"], person["birth_date"], "1") == "checksum"
    key = evaluate([{"code": "D", "parent_code": None, "name": "部"}], [person], [], [])
    assert key["mismatches"] == [] and key["quarantined"][0]["reason"] == "invalid_id_number"


def test_mutate_changes_about_one_percent_and_keeps_plants(demo: Enterprise) -> None:
    copy = generate(staff=2000, seed=1)
    before = copy.answer_key()
    counts = copy.mutate(fraction=0.01, seed=5)
    assert sum(counts.values()) == 20 and copy.version == 1
    after = copy.answer_key()
    for rule in ("ambiguous_match", "status_conflict", "join_date_conflict"):
        assert after["counts"][rule] == before["counts"][rule]
    assert after["quarantined"] == before["quarantined"]


def test_hires_are_new_staff_with_valid_unique_keys() -> None:
    copy = generate(staff=2000, seed=1)
    before = {s["employee_no"] for s in copy.staff}
    counts = copy.mutate(fraction=0.02, seed=5, hires=0.25)
    assert counts["hired"] == 10 and len(copy.staff) == 2010
    hired = [s for s in copy.staff if s["employee_no"] not in before]
    assert len(hired) == 10 and all(s["employment_status"] == "probation" for s in hired)
    for key in ("employee_no", "id_number", "mobile"):
        assert len({s[key] for s in copy.staff}) == len(copy.staff), key
    assert not [s for s in hired if id_number_problem(s["id_number"], s["birth_date"], s["gender"])]
    quarantined = {q["key"].get("employee_no") for q in copy.answer_key()["quarantined"]}
    assert quarantined and not quarantined & {s["employee_no"] for s in hired}


def test_demo_sources_are_written_as_exported(demo: Enterprise, tmp_path: Path) -> None:
    written = write_demo_sources(demo, tmp_path)
    config = yaml.safe_load(write_config(tmp_path).read_text(encoding="utf-8"))
    assert set(config["sources"]) == {"oa", "party-orgs", "roster", "performance"}
    for source in config["sources"].values():
        for path in [source.get("path"), *(source.get("files") or {}).values()]:
            assert path is None or (tmp_path / path).is_file(), path

    raw = (tmp_path / ROSTER).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    rows = list(csv.reader(io.StringIO(raw.decode("gb18030"))))
    assert rows[0][0].endswith("党员花名册") and rows[1][0].startswith("导出时间")
    assert tuple(rows[2]) == ROSTER_COLUMNS
    assert len(rows) - 3 == len(demo.party_members)
    branch_names = {o["name"] for o in demo.party_orgs}
    unknown = [r for r in rows[3:] if r[9] not in branch_names]
    assert len(unknown) == sum(q["reason"] == "unknown_party_org" for q in written["quarantined"])
    assert any(r[2] == "" and r[4] == "" for r in rows[3:])  # the no-ID, no-birth-date rows

    staff = json.loads((tmp_path / "oa/staff.json").read_text(encoding="utf-8"))
    assert len(staff) == len(demo.staff) and {"工号", "政治面貌", "入党日期"} <= set(staff[0])
    assert any("年" in s["出生日期"] for s in staff) and any("/" in s["入职日期"] for s in staff)
    sheet = load_workbook(tmp_path / "party/党组织.xlsx", read_only=True).active
    header, *orgs = list(sheet.iter_rows(values_only=True))
    assert header[0] == "code" and len(orgs) == len(demo.party_orgs)
    assert json.loads((tmp_path / "expected.json").read_text(encoding="utf-8"))["counts"] == written["counts"]


def test_fake_source_pages_add_up(demo: Enterprise) -> None:
    with FakeSource(demo, page_size=300) as source, requests.Session() as http:
        for kind in ("org_units", "staff", "party_orgs", "party_members", "performance"):
            records, page = [], 1
            while True:
                body = http.get(f"{source.url}/{kind}", params={"page": page}).json()
                records += body["data"]
                if page >= body["total_pages"]:
                    break
                page += 1
            assert len(records) == body["total"] == len(demo.records(kind)), kind
        assert isinstance(http.get(f"{source.url}/party_orgs").json()["data"][0]["covers"], str)


def test_fake_source_injects_faults(demo: Enterprise) -> None:
    with FakeSource(demo, page_size=500) as source, requests.Session() as http:
        url = f"{source.url}/staff"
        source.fail("staff", "html", page=2, times=1)
        answer = http.get(url, params={"page": 2})
        assert answer.status_code == 200 and answer.text.startswith("<!DOCTYPE html>")
        assert len(http.get(url, params={"page": 2}).json()["data"]) == 500  # healed after once
        source.fail("staff", "truncate", page=1)
        with pytest.raises(ValueError):
            http.get(url, params={"page": 1}).json()
        source.fail("staff", "short", page=1)
        assert len(http.get(url, params={"page": 1}).json()["data"]) == 250
        source.clear_failures()
        source.fail("staff", "empty")
        assert http.get(url).json() == {"data": [], "page": 1, "total_pages": 0, "total": 0}
        source.fail("staff", "error")
        assert http.get(url).status_code == 500
        assert http.get(f"{source.url}/nothing").status_code == 404
        assert http.get(url, params={"page": 0}).status_code == 400


def test_fake_source_serves_mutations() -> None:
    enterprise = generate(staff=600, seed=2)
    with FakeSource(enterprise) as source:
        before = requests.get(f"{source.url}/staff").json()["data"]
        enterprise.mutate(fraction=0.05, seed=1)
        after = requests.get(f"{source.url}/staff").json()["data"]
        assert after == enterprise.staff and after != before


def test_incremental_fake_serves_only_what_mutate_changed() -> None:
    """FakeSource(incremental=True): every record carries `modified`; after a mutation,
    `modified_since` the first stamp lists exactly the records whose content changed."""
    enterprise = generate(staff=600, seed=4)
    with FakeSource(enterprise, page_size=100, incremental=True) as source:
        def get(kind: str, **params: object) -> list[dict]:
            out, page = [], 1
            while True:
                body = requests.get(f"{source.url}/{kind}", params={"page": page, "page_size": 100, **params},
                                    timeout=10).json()
                out += body["data"]
                if page >= body["total_pages"]:
                    return out
                page += 1

        before = {r["employee_no"]: r for r in get("staff")}
        stamp = max(r["modified"] for r in before.values())
        assert get("staff", modified_since=stamp) == []
        changed = enterprise.mutate(fraction=0.05, seed=2)
        after = {r["employee_no"]: r for r in get("staff")}
        delta = get("staff", modified_since=stamp)
        differs = {k for k, r in after.items()
                   if {f: v for f, v in r.items() if f != "modified"}
                   != {f: v for f, v in before.get(k, {}).items() if f != "modified"}}
        assert sum(changed.values()) and differs
        assert {r["employee_no"] for r in delta} == differs
        assert all(after[k]["modified"] == before[k]["modified"] for k in after.keys() - differs)
