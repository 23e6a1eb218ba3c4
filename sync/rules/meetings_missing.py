"""`meetings_missing`: organizational life held less often than required (支部工作条例 Arts. 11–19).

Required per activity type (canonical types of mappings.codes.ACTIVITY_TYPE), each configurable
as `types: {<type>: {per: month|quarter|year, min: N}}` (a type given is merged over its default;
`min: 0` stops requiring it):
  member_meeting ≥1 per quarter (Art. 11), committee_meeting ≥1 per month (Art. 12, only for
  branches with `has_committee` true), group_meeting ≥1 per month (common practice; judged per
  active group org — a branch without groups has nothing to judge), party_lecture ≥1 per quarter
  (Art. 16), theme_day ≥1 per month (Art. 16), org_life_meeting and democratic_review ≥1 per year
  (Arts. 17, 19); secretary_lecture ≥1 per year (Art. 16: each secretary gives a party lecture at
  least once a year — a `party_lecture` whose `lecturer` is the branch's `secretary`, by name or by
  the employee number of the org's member of that name; judged for orgs with a secretary, and only
  once any activity records a lecturer, so sources without lecturers do not flag every branch).
Subjects: active party orgs of kind `branch` (group meetings: of kind `group`).

Only *completed* periods are judged: the last `periods` (default 1) months / quarters / years
that ended before `today` — a quarter still running is never a finding. A meeting belongs to the
period its `held_on` falls in: held on the last day of a quarter it counts for that quarter, on
the first day of the next it does not.

Quorum (Art. 11): a member meeting counts only if more than half of those who should attend were
present, `attendees > expected / 2` (compared as `2 * attendees > expected`, so exactly half fails
and half + 1 passes). When `expected` or `attendees` is unknown (null) the meeting counts: the
source did not record the roll, and absence of a number is not evidence of a failed quorum.
Meetings that failed the quorum are listed in the finding (`quorum_failed`).

One finding per org, type and period (subject key `party_org:<code>|<type>|<period>`), so a missed
quarter stays one item with its own state; details hold counts and the required minimum only
(stable until the data changes). A period that leaves the look-back window is no longer judged
and its finding closes: raise `periods` to keep older periods in view.

Until any activity is stored (`only_if_tracked`, default true) nothing is judged: a deployment that
does not sync or enter activities yet would otherwise get every branch flagged for every type.

Counting is one GROUP BY (org, type, period bucket) over the activities in the window; the
quorum-failed meetings are a second query over the same window.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from sqlalchemy import text

from sync.alignment import Violation
from sync.rules.base import Rule, RuleContext, ThresholdSchema, iso
from sync.rules.sql import select_where

PERS = ("month", "quarter", "year")
# Defaults from reference/party-rules.md "Organizational life".
DEFAULT_TYPES: dict[str, dict[str, Any]] = {
    "member_meeting": {"per": "quarter", "min": 1},
    "committee_meeting": {"per": "month", "min": 1},
    "group_meeting": {"per": "month", "min": 1},
    "party_lecture": {"per": "quarter", "min": 1},
    "theme_day": {"per": "month", "min": 1},
    "org_life_meeting": {"per": "year", "min": 1},
    "democratic_review": {"per": "year", "min": 1},
    "secretary_lecture": {"per": "year", "min": 1},
}
# Not an activity type of its own: party lectures given by the org's secretary.
SECRETARY_LECTURE = "secretary_lecture"
REFERENCES = {
    "member_meeting": "支部工作条例 Art. 11",
    "committee_meeting": "支部工作条例 Art. 12",
    "group_meeting": "common practice",
    "party_lecture": "支部工作条例 Art. 16",
    "theme_day": "支部工作条例 Art. 16",
    "org_life_meeting": "支部工作条例 Art. 17",
    "democratic_review": "支部工作条例 Art. 19",
    "secretary_lecture": "支部工作条例 Art. 16",
}
MAX_PERIODS = 36


class TypeSchema(Schema):
    class Meta:
        unknown = RAISE

    per = fields.String(validate=validate.OneOf(PERS))
    min = fields.Integer(strict=True, validate=validate.Range(min=0, max=1000))


# --- periods ---------------------------------------------------------------------------------


def _period(day: dt.date, per: str) -> tuple[str, dt.date, dt.date]:
    """The period of `per` containing `day`: its label, first day and the first day after it."""
    if per == "year":
        return str(day.year), dt.date(day.year, 1, 1), dt.date(day.year + 1, 1, 1)
    if per == "quarter":
        q = (day.month - 1) // 3
        start = dt.date(day.year, 3 * q + 1, 1)
        end = dt.date(day.year + 1, 1, 1) if q == 3 else dt.date(day.year, 3 * q + 4, 1)
        return f"{day.year}Q{q + 1}", start, end
    start = day.replace(day=1)
    end = dt.date(day.year + 1, 1, 1) if day.month == 12 else dt.date(day.year, day.month + 1, 1)
    return f"{day.year}-{day.month:02d}", start, end


def completed_periods(today: dt.date, per: str, count: int) -> list[tuple[str, dt.date, dt.date]]:
    """The last `count` periods of `per` that ended before `today`, latest first."""
    out = []
    _, start, _ = _period(today, per)  # the running period: not judged
    for _ in range(count):
        period = _period(start - dt.timedelta(days=1), per)
        out.append(period)
        start = period[1]
    return out


# --- SQL ---------------------------------------------------------------------------------------

_ORGS = """
SELECT o.id, o.code, o.name, o.kind, o.has_committee, o.secretary
FROM party_orgs o
WHERE o.active = :yes AND o.kind IN ('branch', 'group')
"""

_MEMBER_QUORUM_FAILED = ("a.type = 'member_meeting' AND a.expected IS NOT NULL AND a.attendees IS NOT NULL "
                         "AND 2 * a.attendees <= a.expected")


class MeetingsMissing(Rule):
    id = "meetings_missing"
    reference = "支部工作条例 Art. 11; Art. 12; Art. 16; Arts. 17, 19"
    summary = ("三会一课 and more: member meeting ≥1 per quarter, committee meeting and theme day monthly, "
               "party lecture ≥1 per quarter (each secretary lectures ≥1 per year), 组织生活会 and democratic "
               "review ≥1 per year; "
               "a member meeting needs more than half present")
    severity = "medium"

    class Thresholds(ThresholdSchema):
        types = fields.Dict(keys=fields.String(), values=fields.Nested(TypeSchema), load_default=dict)
        periods = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=1, max=MAX_PERIODS))
        # With no activity stored at all, judge nothing rather than flag every branch for every type.
        only_if_tracked = fields.Boolean(load_default=True)

        @validates("types")
        def _known_types(self, value: dict[str, Any], **_: Any) -> None:
            unknown = sorted(set(value) - set(DEFAULT_TYPES))
            if unknown:
                raise ValidationError(f"unknown activity type '{unknown[0]}' (known: {', '.join(DEFAULT_TYPES)})")

    @staticmethod
    def requirements(thresholds: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Per type, `per` and `min` as configured over the defaults; types with `min: 0` dropped."""
        merged = {t: DEFAULT_TYPES[t] | dict(thresholds.get("types", {}).get(t, {})) for t in DEFAULT_TYPES}
        return {t: r for t, r in merged.items() if r["min"] > 0}

    def detect(self, ctx: RuleContext) -> list[Violation]:
        required = self.requirements(ctx.thresholds)
        if not required:
            return []
        if ctx.thresholds["only_if_tracked"] and ctx.conn.execute(
                text("SELECT 1 FROM activities WHERE active = :yes"), ctx.sql_params()).first() is None:
            return []  # no activity recorded at all: organizational life is not tracked (yet)
        count = ctx.thresholds["periods"]
        periods = {per: completed_periods(ctx.today, per, count) for per in {r["per"] for r in required.values()}}
        window_start = min(p[1] for ps in periods.values() for p in ps)
        window_end = max(p[2] for ps in periods.values() for p in ps)

        # The period bucket of each activity, by its type's `per`: one CASE branch per (per, period).
        params: dict[str, Any] = {"w_start": window_start, "w_end": window_end}
        dates: list[str] = ["w_start", "w_end"]
        branches = []
        for per, ps in sorted(periods.items()):
            types = [t for t, r in required.items() if r["per"] == per and t != SECRETARY_LECTURE]
            if not types:
                continue
            tnames = []
            for j, t in enumerate(types):
                params[f"t_{per}_{j}"] = t
                tnames.append(f":t_{per}_{j}")
            for i, (label, start, end) in enumerate(ps):
                s, e, lab = f"s_{per}_{i}", f"e_{per}_{i}", f"l_{per}_{i}"
                params |= {s: start, e: end, lab: label}
                dates += [s, e]
                branches.append(f"WHEN a.type IN ({', '.join(tnames)}) AND a.held_on >= :{s} AND a.held_on < :{e} "
                                f"THEN :{lab}")
        bucket = "CASE " + " ".join(branches) + " END" if branches else "NULL"
        counts_sql = f"""
            SELECT b.code, b.type, b.bucket, COUNT(*) AS held, SUM(b.counts) AS counted
            FROM (
                SELECT a.party_org_code AS code, a.type, {bucket} AS bucket,
                       CASE WHEN {_MEMBER_QUORUM_FAILED} THEN 0 ELSE 1 END AS counts
                FROM activities a
                WHERE a.active = :yes AND a.held_on >= :w_start AND a.held_on < :w_end
                  AND a.party_org_code IS NOT NULL
            ) b
            WHERE b.bucket IS NOT NULL
            GROUP BY b.code, b.type, b.bucket
        """
        held: dict[tuple[str, str, str], tuple[int, int]] = {
            (r.code, r.type, r.bucket): (int(r.held), int(r.counted))
            for r in select_where(ctx, counts_sql, "1 = 1", dates=tuple(dates),
                                  order="c.code, c.type, c.bucket", **params)
        }
        failed_sql = f"""
            SELECT a.id, a.activity_key, a.party_org_code AS code, a.held_on, a.attendees, a.expected
            FROM activities a
            WHERE a.active = :yes AND a.held_on >= :w_start AND a.held_on < :w_end AND {_MEMBER_QUORUM_FAILED}
        """
        failed: dict[str, list[Any]] = defaultdict(list)
        for r in select_where(ctx, failed_sql, "1 = 1", dates=("w_start", "w_end"), order="c.held_on, c.id",
                              w_start=window_start, w_end=window_end):
            failed[r.code].append(r)

        lecturers_tracked = False
        if SECRETARY_LECTURE in required:
            lecturers_tracked = ctx.conn.execute(text(
                "SELECT 1 FROM activities WHERE active = :yes AND lecturer IS NOT NULL"), ctx.sql_params()).first() is not None
        if lecturers_tracked:
            held |= self._secretary_lectures(ctx, periods[required[SECRETARY_LECTURE]["per"]])

        found = []
        for org in select_where(ctx, _ORGS, "1 = 1"):
            for type_, req in required.items():
                if (type_ == "group_meeting") != (org.kind == "group"):
                    continue
                if type_ == "committee_meeting" and not org.has_committee:
                    continue
                if type_ == SECRETARY_LECTURE and (not lecturers_tracked or org.kind != "branch"
                                                   or not (org.secretary or "").strip()):
                    continue
                for label, start, end in periods[req["per"]]:
                    n_held, n_counted = held.get((org.code, type_, label), (0, 0))
                    if n_counted >= req["min"]:
                        continue
                    quorum_failed = [
                        {"id": r.activity_key, "held_on": iso(r.held_on), "attendees": r.attendees,
                         "expected": r.expected}
                        for r in failed[org.code]
                        if type_ == "member_meeting" and start <= _date(r.held_on) < end
                    ]
                    found.append(self._violation(ctx, org, type_, req, label, start, end,
                                                 n_held, n_counted, quorum_failed))
        return found

    @staticmethod
    def _secretary_lectures(ctx: RuleContext, periods: list[tuple[str, dt.date, dt.date]]
                            ) -> dict[tuple[str, str, str], tuple[int, int]]:
        """Party lectures given by each org's secretary per period: (code, type, period) → counts.
        The lecturer matches the secretary's name, or the employee number of the org's active
        member who has that name (one GROUP BY per period, a handful of periods)."""
        out: dict[tuple[str, str, str], tuple[int, int]] = {}
        for label, start, end in periods:
            sql = """
                SELECT o.code, COUNT(DISTINCT a.id) AS held
                FROM party_orgs o
                JOIN activities a ON a.party_org_code = o.code AND a.active = :yes
                     AND a.type = 'party_lecture' AND a.held_on >= :p_start AND a.held_on < :p_end
                WHERE o.active = :yes AND o.secretary IS NOT NULL
                  AND (TRIM(a.lecturer) = TRIM(o.secretary)
                       OR EXISTS (SELECT 1 FROM memberships m JOIN persons p ON p.id = m.person_id
                                  WHERE m.party_org_code = o.code AND m.active = :yes
                                    AND TRIM(p.name) = TRIM(o.secretary) AND p.employee_no = TRIM(a.lecturer)))
                GROUP BY o.code
            """
            for r in select_where(ctx, sql, "1 = 1", dates=("p_start", "p_end"), p_start=start, p_end=end):
                out[(r.code, SECRETARY_LECTURE, label)] = (int(r.held), int(r.held))
        return out

    def _violation(self, ctx: RuleContext, org: Any, type_: str, req: dict[str, Any], label: str,
                   start: dt.date, end: dt.date, n_held: int, n_counted: int,
                   quorum_failed: list[dict[str, Any]]) -> Violation:
        v = self.org_violation(ctx, org, {
            "type": type_, "type_regulation": REFERENCES[type_],
            "period": label, "per": req["per"],
            "period_start": iso(start), "period_end": iso(end - dt.timedelta(days=1)),
            "held": n_held, "counted": n_counted, "required": req["min"],
            "quorum_failed": quorum_failed,
        })
        return Violation(rule=v.rule, subject_key=f"{v.subject_key}|{type_}|{label}", subject_type=v.subject_type,
                         subject_id=v.subject_id, label=v.label, details=v.details,
                         party_org_code=v.party_org_code)


def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


RULE = MeetingsMissing()
