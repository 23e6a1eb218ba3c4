"""Points (积分制): configurable schemes, the ledger, rankings per branch, 先锋指数 and 堡垒指数.

Config (`dualline.yaml`, validated here with marshmallow; errors name `points.<key path>`):

    points:
      schemes:
        default:                       # every branch uses `default` unless `branch_schemes` says otherwise
          base: 60                     # everyone starts the year with this
          cap: 100                     # the total is clamped to [floor, cap]
          floor: 0
          rules:
            - {category: attendance, per: activity, points: 2, max_per_year: 24}   # types: [...] optional
            - {category: performance, grade_points: {A: 10, B: 5, C: 0, D: -5}}
            - {category: manual, max_per_year: 20, min_per_year: -30}
      branch_schemes: {B07: strict}    # party org code → scheme name
      member_index: {weights: {points: 1.0}}
      branch_index: {weights: {members_points: 0.4, standardization: 0.3, meetings: 0.15, dues: 0.15}}

Categories and where their points come from (for one person and one calendar year):
  * `attendance` — activities (`activities`, active, `held_on` in the year, of the member's own
    party org, of `types` when given) whose `attendee_nos` lists the member's employee number:
    `points` each. Individual attendance is modelled by the activity's `attendee_nos` (the
    canonical field, `;`-separated employee numbers); an activity without it gives no one points
    (only a head count is known: no individual can be credited).
  * `performance` — the member's appraisal grade of the year (`performance.period` = the year, else
    the latest period inside it): `grade_points` by grade; keys are letter grades or the canonical
    Chinese grades (A = 优秀, B = 良好, C = 合格, D = 不合格, 基本合格).
  * any other category (`manual`, `volunteer`, `study`, `discipline`, …) — the sum of the member's
    `points_ledger` lines of that category and year (entered with `dualline points add` or
    imported), with reasons. Ledger lines of a category the scheme does not list count as they are.
Each category's sum is clamped to [`min_per_year`, `max_per_year`] when given; the total
`base + Σ categories` is clamped to [`floor`, `cap`].

Indices (0–100, one decimal; a weighted mean of the components that have data, weights
renormalised over those — so a missing input neither counts as 0 nor blocks the index):
  * 先锋指数 (member): `points` = (total − floor) / (cap − floor) × 100; `attendance_rate` = share of
    the org's activities with a recorded roll that the member attended × 100; `performance` = the
    grade on a 100 scale (优秀 100, 良好 80, 合格 60, 基本合格 40, 不合格 0).
  * 堡垒指数 (branch): `members_points` = mean member `points` component; `standardization`,
    `meetings` (held vs required) and `dues` (collection rate) from sync/indicators.py, × 100.
Rankings: per branch by total, descending; ties share a rank (1, 2, 2, 4).
"""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Connection, Date, bindparam, text
from sqlalchemy.orm import Session

from mappings.base import MappingError
from mappings.codes import ACTIVITY_TYPE, PERFORMANCE_GRADE
from records.models import AuditLog, Person, PointsEntry
from sync.config import Config, ConfigError, _flatten

COMPUTED = ("attendance", "performance")
GRADE_SCALE = {"优秀": 100.0, "良好": 80.0, "合格": 60.0, "基本合格": 40.0, "不合格": 0.0}
MEMBER_COMPONENTS = ("points", "attendance_rate", "performance")
BRANCH_COMPONENTS = ("members_points", "standardization", "meetings", "dues")
DEFAULT_SCHEME: dict[str, Any] = {
    "base": 60, "cap": 100, "floor": 0,
    "rules": [
        {"category": "attendance", "per": "activity", "points": 2, "max_per_year": 24},
        {"category": "performance", "grade_points": {"A": 10, "B": 5, "C": 0, "D": -5}},
        {"category": "manual"},
    ],
}
DEFAULT_MEMBER_WEIGHTS = {"points": 1.0}
DEFAULT_BRANCH_WEIGHTS = {"members_points": 0.4, "standardization": 0.3, "meetings": 0.15, "dues": 0.15}


def _grade(value: str) -> str:
    try:
        return PERFORMANCE_GRADE.lookup(value)
    except MappingError:
        raise ValidationError(f"unknown grade '{value}' (known: A, B, C, D, {', '.join(GRADE_SCALE)})") from None


def _activity_type(value: str) -> str:
    try:
        return ACTIVITY_TYPE.lookup(value)
    except MappingError:
        raise ValidationError(f"unknown activity type '{value}'") from None


def _roll(value: Any) -> set[str] | None:
    """An activity's `attendee_nos` as a set; None when no roll was recorded (JSON comes back as
    text from SQLite and MariaDB through plain SQL, parsed from PostgreSQL)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, list):
        return None
    return {str(x) for x in value}


class RuleSchema(Schema):
    class Meta:
        unknown = RAISE

    category = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,31}$"))
    per = fields.String(validate=validate.OneOf(("activity",)), load_default="activity")
    points = fields.Float(load_default=None, allow_none=True)
    types = fields.List(fields.String(), load_default=None, allow_none=True)
    grade_points = fields.Dict(keys=fields.String(), values=fields.Float(), load_default=None, allow_none=True)
    max_per_year = fields.Float(load_default=None, allow_none=True)
    min_per_year = fields.Float(load_default=None, allow_none=True)

    @validates_schema
    def _by_category(self, data: dict[str, Any], **_: Any) -> None:
        if data["category"] == "attendance" and data.get("points") is None:
            raise ValidationError("attendance needs points (per activity attended)", "points")
        if data["category"] == "performance" and not data.get("grade_points"):
            raise ValidationError("performance needs grade_points", "grade_points")
        for t in data.get("types") or []:
            try:
                _activity_type(t)
            except ValidationError as exc:
                raise ValidationError(exc.messages, "types") from None
        for g in data.get("grade_points") or {}:
            try:
                _grade(g)
            except ValidationError as exc:
                raise ValidationError(exc.messages, "grade_points") from None
        lo, hi = data.get("min_per_year"), data.get("max_per_year")
        if lo is not None and hi is not None and lo > hi:
            raise ValidationError("must not exceed max_per_year", "min_per_year")


class SchemeSchema(Schema):
    class Meta:
        unknown = RAISE

    base = fields.Float(load_default=60)
    cap = fields.Float(load_default=100)
    floor = fields.Float(load_default=0)
    rules = fields.List(fields.Nested(RuleSchema), load_default=list)

    @validates_schema
    def _bounds(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("floor", 0) >= data.get("cap", 100):
            raise ValidationError("must be below cap", "floor")
        categories = [r["category"] for r in data.get("rules", [])]
        duplicated = sorted({c for c in categories if categories.count(c) > 1})
        if duplicated:
            raise ValidationError(f"category '{duplicated[0]}' listed twice", "rules")


def _weights(known: tuple[str, ...]) -> fields.Dict:
    return fields.Dict(keys=fields.String(validate=validate.OneOf(known)),
                       values=fields.Float(validate=validate.Range(min=0)))


class MemberIndexSchema(Schema):
    class Meta:
        unknown = RAISE

    weights = _weights(MEMBER_COMPONENTS)


class BranchIndexSchema(Schema):
    class Meta:
        unknown = RAISE

    weights = _weights(BRANCH_COMPONENTS)


class PointsSchema(Schema):
    class Meta:
        unknown = RAISE

    # Each scheme is loaded by SchemeSchema in PointsSettings.load, so its errors name
    # `points.schemes.<name>.<key>` (a Dict of Nested would report them under `.value`).
    schemes = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=None)
    branch_schemes = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    member_index = fields.Nested(MemberIndexSchema, load_default=lambda: {"weights": dict(DEFAULT_MEMBER_WEIGHTS)})
    branch_index = fields.Nested(BranchIndexSchema, load_default=lambda: {"weights": dict(DEFAULT_BRANCH_WEIGHTS)})

    @validates_schema
    def _names(self, data: dict[str, Any], **_: Any) -> None:
        schemes = data.get("schemes")
        if schemes is not None and "default" not in schemes:
            raise ValidationError("a scheme named 'default' is required", "schemes")
        names = set(schemes or {"default": None})
        for code, name in data.get("branch_schemes", {}).items():
            if name not in names:
                raise ValidationError({code: [f"unknown scheme '{name}' (known: {', '.join(sorted(names))})"]},
                                      "branch_schemes")


@dataclass(frozen=True)
class PointsSettings:
    schemes: dict[str, dict[str, Any]]
    branch_schemes: dict[str, str]
    member_weights: dict[str, float]
    branch_weights: dict[str, float]

    @classmethod
    def load(cls, raw: Mapping[str, Any] | None, where: str = "config") -> PointsSettings:
        """Validate a `points:` block; a ConfigError names `points.<key path>`."""
        if raw is not None and not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: points: must be a mapping")
        try:
            data = PointsSchema().load(dict(raw or {}))
        except ValidationError as exc:
            raise ConfigError(f"{where}: " + "; ".join(_flatten(exc.messages, "points"))) from None
        schemes = {}
        for name, block in (data["schemes"] or {"default": DEFAULT_SCHEME}).items():
            try:
                schemes[name] = SchemeSchema().load(dict(block))
            except ValidationError as exc:
                raise ConfigError(f"{where}: " + "; ".join(_flatten(exc.messages, f"points.schemes.{name}"))) from None
        for scheme in schemes.values():
            for rule in scheme["rules"]:
                if rule.get("grade_points"):
                    rule["grade_points"] = {_grade(g): p for g, p in rule["grade_points"].items()}
                if rule.get("types"):
                    rule["types"] = [_activity_type(t) for t in rule["types"]]
        return cls(schemes=schemes, branch_schemes=data["branch_schemes"],
                   member_weights=data["member_index"].get("weights") or dict(DEFAULT_MEMBER_WEIGHTS),
                   branch_weights=data["branch_index"].get("weights") or dict(DEFAULT_BRANCH_WEIGHTS))

    @classmethod
    def from_config(cls, config: Config | None) -> PointsSettings:
        if config is None:
            return cls.load(None)
        return cls.load(config.points, str(config.path) if config.path else "config")

    def scheme_for(self, party_org_code: str | None) -> tuple[str, dict[str, Any]]:
        name = self.branch_schemes.get(party_org_code or "", "default")
        return name, self.schemes[name]


# --- scores ----------------------------------------------------------------------------------


@dataclass
class MemberScore:
    person_id: int
    name: str
    employee_no: str | None
    party_org_code: str | None
    scheme: str
    base: float
    categories: dict[str, float]
    raw_total: float
    total: float
    grade: str | None
    attended: int
    rollcalls: int
    vanguard_index: float | None
    rank: int = 0
    components: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank, "person_id": self.person_id, "name": self.name, "employee_no": self.employee_no,
            "party_org_code": self.party_org_code, "scheme": self.scheme, "base": self.base,
            "categories": self.categories, "raw_total": self.raw_total, "total": self.total,
            "grade": self.grade, "attended": self.attended, "rollcalls": self.rollcalls,
            "vanguard_index": self.vanguard_index, "components": self.components,
        }


def weighted_index(values: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """Weighted mean over the components that have a value (weights renormalised), 1 decimal."""
    used = {k: w for k, w in weights.items() if w > 0 and values.get(k) is not None}
    total = sum(used.values())
    if not total:
        return None
    return round(sum(values[k] * w for k, w in used.items()) / total, 1)  # type: ignore[operator]


def _clamp(value: float, lo: float | None, hi: float | None) -> float:
    if lo is not None:
        value = max(lo, value)
    if hi is not None:
        value = min(hi, value)
    return value


def _expanding(sql: str, *names: str):
    return text(sql).bindparams(*(bindparam(n, expanding=True) for n in names))


def year_grades(conn: Connection, person_ids: Sequence[int], year: int) -> dict[int, str]:
    """Each person's appraisal grade of `year`: period "YYYY", else the latest period in it."""
    if not person_ids:
        return {}
    rows = conn.execute(_expanding("""
        SELECT f.person_id, f.period, f.grade FROM performance f
        WHERE f.active = :yes AND f.person_id IN :ids AND f.grade IS NOT NULL
          AND (f.period = :year OR f.period LIKE :prefix)
    """, "ids"), {"yes": True, "ids": list(person_ids), "year": str(year), "prefix": f"{year}-%"})
    best: dict[int, tuple[int, str, str]] = {}
    for r in rows:
        key = (1 if r.period == str(year) else 0, r.period, r.grade)
        if r.person_id not in best or key > best[r.person_id]:
            best[r.person_id] = key
    return {pid: k[2] for pid, k in best.items()}


def member_scores(session: Session, party_org_codes: Sequence[str], year: int,
                  settings: PointsSettings) -> list[MemberScore]:
    """Scores of the active members of `party_org_codes` for `year`, ranked per party org."""
    conn = session.connection()
    codes = list(party_org_codes)
    if not codes:
        return []
    members = list(conn.execute(_expanding("""
        SELECT p.id AS person_id, p.name, p.employee_no, m.party_org_code
        FROM memberships m JOIN persons p ON p.id = m.person_id
        WHERE m.active = :yes AND m.status = 'active' AND m.party_org_code IN :codes
        ORDER BY m.party_org_code, p.id
    """, "codes"), {"yes": True, "codes": codes}))
    ids = [m.person_id for m in members]
    start, end = dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
    rollcalls: dict[str, list[tuple[str | None, set[str]]]] = defaultdict(list)
    stmt = _expanding("""
        SELECT a.party_org_code, a.type, a.attendee_nos FROM activities a
        WHERE a.active = :yes AND a.party_org_code IN :codes AND a.held_on >= :start AND a.held_on < :end
    """, "codes").bindparams(bindparam("start", type_=Date), bindparam("end", type_=Date))
    for a in conn.execute(stmt, {"yes": True, "codes": codes, "start": start, "end": end}):
        present = _roll(a.attendee_nos)
        if present is not None:  # a recorded roll; None / JSON null: only a head count is known
            rollcalls[a.party_org_code].append((a.type, present))
    grades = year_grades(conn, ids, year)
    ledger: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    if ids:
        for r in conn.execute(_expanding("""
            SELECT person_id, category, SUM(points) AS points FROM points_ledger
            WHERE year = :year AND person_id IN :ids GROUP BY person_id, category
        """, "ids"), {"year": year, "ids": ids}):
            ledger[r.person_id][r.category] += float(r.points or 0)

    scores = []
    for m in members:
        scheme_name, scheme = settings.scheme_for(m.party_org_code)
        categories: dict[str, float] = {}
        org_rolls = rollcalls.get(m.party_org_code, [])
        attended_all = sum(1 for _, present in org_rolls if m.employee_no and m.employee_no in present)
        for rule in scheme["rules"]:
            cat = rule["category"]
            if cat == "attendance":
                types = rule.get("types")
                n = sum(1 for t, present in org_rolls
                        if (not types or t in types) and m.employee_no and m.employee_no in present)
                value = n * rule["points"]
            elif cat == "performance":
                grade = grades.get(m.person_id)
                value = rule["grade_points"].get(grade, 0.0) if grade else 0.0
            else:
                value = ledger[m.person_id].get(cat, 0.0)
            categories[cat] = round(_clamp(value, rule.get("min_per_year"), rule.get("max_per_year")), 2)
        for cat, value in ledger[m.person_id].items():
            if cat not in categories and cat not in COMPUTED:
                categories[cat] = round(value, 2)
        raw = round(scheme["base"] + sum(categories.values()), 2)
        total = round(_clamp(raw, scheme["floor"], scheme["cap"]), 2)
        grade = grades.get(m.person_id)
        components = {
            "points": round((total - scheme["floor"]) / (scheme["cap"] - scheme["floor"]) * 100, 2),
            "attendance_rate": round(attended_all / len(org_rolls) * 100, 2) if org_rolls else None,
            "performance": GRADE_SCALE.get(grade) if grade else None,
        }
        scores.append(MemberScore(
            person_id=m.person_id, name=m.name, employee_no=m.employee_no, party_org_code=m.party_org_code,
            scheme=scheme_name, base=scheme["base"], categories=categories, raw_total=raw, total=total,
            grade=grade, attended=attended_all, rollcalls=len(org_rolls),
            vanguard_index=weighted_index(components, settings.member_weights), components=components))
    _rank(scores)
    return scores


def _rank(scores: list[MemberScore]) -> None:
    """Competition ranking per party org by total (ties share a rank), then by name for display."""
    scores.sort(key=lambda s: (s.party_org_code or "", -s.total, s.name, s.person_id))
    previous: tuple[str | None, float] | None = None
    position = 0
    rank = 0
    for s in scores:
        if previous is None or previous[0] != s.party_org_code:
            position, rank = 0, 0
        position += 1
        if previous is None or previous != (s.party_org_code, s.total):
            rank = position
        s.rank = rank
        previous = (s.party_org_code, s.total)


def ranking(session: Session, branch_code: str, year: int, settings: PointsSettings,
            today: dt.date | None = None, rule_set: Any = None) -> dict[str, Any]:
    """A branch's ranking for `year` with its 堡垒指数 (see the module docstring)."""
    from sync.indicators import org_indicators

    scores = member_scores(session, [branch_code], year, settings)
    indicators = org_indicators(session, branch_code, today=today, rule_set=rule_set)
    points = [s.components["points"] for s in scores]
    components = {
        "members_points": round(sum(points) / len(points), 2) if points else None,
        "standardization": indicators["standardization"]["score"],
        "meetings": None if indicators["meetings"]["rate"] is None else round(indicators["meetings"]["rate"] * 100, 2),
        "dues": None if indicators["dues"]["rate"] is None else round(indicators["dues"]["rate"] * 100, 2),
    }
    return {"party_org_code": branch_code, "year": year, "members": [s.as_dict() for s in scores],
            "fortress_index": weighted_index(components, settings.branch_weights),
            "fortress_components": components}


def add_entry(session: Session, *, person_id: int, year: int, category: str, points: float, reason: str,
              actor: str, source: str = "manual", party_org_code: str | None = None) -> PointsEntry:
    """One ledger line with its reason, audited (who, what, why). The caller commits."""
    if not reason.strip():
        raise ValueError("a reason is required")
    if not (1900 <= year <= 2200):
        raise ValueError(f"year {year} is out of range")
    person = session.get(Person, person_id)
    if person is None:
        raise LookupError(f"no person {person_id}")
    if party_org_code is None:
        party_org_code = session.execute(text(
            "SELECT party_org_code FROM memberships WHERE person_id = :p AND active = :yes AND status = 'active' "
            "ORDER BY id DESC"), {"p": person_id, "yes": True}).scalar()
    entry = PointsEntry(person_id=person_id, party_org_code=party_org_code, year=year, category=category,
                        points=points, reason=reason.strip(), source=source, created_by=actor)
    session.add(entry)
    session.flush()
    session.add(AuditLog(actor=actor, action="points_entry", target_type="person", target_id=str(person_id),
                         details={"entry_id": entry.id, "year": year, "category": category, "points": points,
                                  "reason": entry.reason, "party_org_code": party_org_code}))
    return entry
