"""End to end: enterprises the engine has never seen, with planted disagreements of every kind.

The answer key comes from benchmarks.answer_key, an independent evaluation of DESIGN.md's rules
over the generated source data. Every planted mismatch must be found with the right rule and
subject, and nothing else may be reported.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from records.db import session_factory
from records.models import Mismatch, Person
from sync.alignment import DUAL_LINE_RULES
from tests.sync.conftest import Site, make_site


def found_mismatches(site: Site) -> list[dict[str, Any]]:
    """Open mismatches, in the answer key's shape."""
    cipher = site.runtime.cipher
    out = []
    with session_factory(site.runtime.engine)() as session:
        rows = session.execute(
            select(Mismatch, Person)
            .outerjoin(Person, (Mismatch.subject_type == "person") & (Person.id == Mismatch.subject_id))
            .where(Mismatch.state == "open", Mismatch.rule.in_([*DUAL_LINE_RULES, "ambiguous_match"]))
        )
        for m, person in rows:
            if m.rule == "ambiguous_match":
                subject = {"type": "person", "label": m.subject_label,
                           "birth_date": m.details["record"].get("birth_date")}
            elif m.subject_type == "org_unit":
                subject = {"type": "org_unit", "code": m.org_unit_code, "label": m.subject_label}
            elif person.employee_no:
                subject = {"type": "person", "employee_no": person.employee_no, "label": person.name}
            else:
                subject = {"type": "person", "id_number": cipher.decrypt(person.id_number_enc),
                           "label": person.name}
            out.append({"rule": m.rule, "subject": subject})
    return out


def _key(item: dict[str, Any]) -> tuple:
    return (item["rule"], tuple(sorted((k, str(v)) for k, v in item["subject"].items())))


def assert_matches_answer_key(site: Site) -> None:
    expected = sorted(map(_key, site.enterprise.expected_mismatches()))
    found = sorted(map(_key, found_mismatches(site)))
    missing = [e for e in expected if e not in found]
    extra = [f for f in found if f not in expected]
    assert not missing and not extra, f"missing={missing}\nextra={extra}"


def test_finds_every_planted_mismatch_and_nothing_else(site: Site) -> None:
    result = site.sync()
    assert result.status == "succeeded", result.errors
    expected_rules = Counter(m["rule"] for m in site.enterprise.expected_mismatches())
    assert set(expected_rules) == {
        "branch_mismatch", "missing_membership", "orphan_membership", "status_conflict",
        "join_date_conflict", "uncovered_unit", "ambiguous_match",
    }
    # (standardization findings share the queue; the answer key covers the dual-line rules)
    assert {r: n for r, n in result.mismatches_by_rule.items() if r in expected_rules} == dict(expected_rules)
    assert_matches_answer_key(site)


def test_quarantines_exactly_the_noise_with_reasons(site: Site) -> None:
    result = site.sync()
    expected = site.expected["quarantined"]
    assert sum(c["quarantined"] for c in result.counts.values()) == len(expected)
    fields = sorted(q["field"] for q in result.quarantined)
    assert fields == sorted(q["field"] for q in expected)
    for q in result.quarantined:
        assert q["reason"] and q["row"], q


@pytest.mark.parametrize("seed,staff", [(5, 450), (23, 1200)])
def test_other_enterprises(tmp_path: Path, sqlite_url: str, seed: int, staff: int) -> None:
    site = make_site(tmp_path / "src", sqlite_url, staff=staff, seed=seed, subsidiaries=2 + seed % 3)
    assert site.sync().status == "succeeded"
    assert_matches_answer_key(site)


def test_on_every_database_backend(tmp_path: Path, any_db_url: str) -> None:
    site = make_site(tmp_path / "src", any_db_url, staff=400, seed=3)
    first = site.sync()
    assert first.status == "succeeded", first.errors
    assert_matches_answer_key(site)
    again = site.sync()
    assert again.status == "succeeded"
    assert again.mismatches == {"opened": 0, "closed": 0, "open": first.mismatches["open"]}
    assert all(c["created"] == c["updated"] == c["deactivated"] == 0 for c in again.counts.values())


def test_changes_close_and_open_mismatches(site: Site) -> None:
    site.sync()
    moved = site.enterprise.mutate(fraction=0.05, seed=4)
    assert moved["moved"]
    site.rewrite()
    result = site.sync()
    assert result.status == "succeeded", result.errors
    assert result.counts["staff"]["updated"] > 0
    assert_matches_answer_key(site)


def test_rerun_is_idempotent_and_fingerprints_skip_unchanged(site: Site) -> None:
    site.sync()
    result = site.sync()
    staff = result.counts["staff"]
    assert staff["unchanged"] == len(site.enterprise.staff) - staff["quarantined"]
    assert staff["created"] == staff["updated"] == 0


def test_a_record_turned_invalid_is_quarantined_not_deactivated(site: Site) -> None:
    site.sync()
    victim = next(p for p in site.enterprise.staff if p["employment_status"] == "active" and p["id_number"])
    good_id = victim["id_number"]
    victim["id_number"] = good_id[:-1] + ("0" if good_id[-1] != "0" else "1")  # breaks the checksum
    victim["political_status"] = "党员啊"  # and an unknown code
    site.rewrite()
    result = site.sync()
    assert result.status == "succeeded"
    assert result.counts["staff"]["deactivated"] == 0
    reasons = [q for q in result.quarantined if q["kind"] == "staff" and q["row"]]
    assert any("id_number" in (q["field"] or "") or "身份证" in q["reason"] for q in reasons)
    with session_factory(site.runtime.engine)() as s:
        person = s.scalar(select(Person).where(Person.employee_no == victim["employee_no"]))
        assert person.staff_active and person.id_number_hash == site.runtime.cipher.keyed_hash(good_id)
