"""Party dues (党费): the expected monthly amount per member, what was paid, and the branch sheet.

Rates from 关于中国共产党党费收缴、使用和管理的规定 (in force 2008-04-01), reference/party-rules.md
"Dues"; each is a default of `rules.dues_underpaid` in dualline.yaml, so a unit whose practice
differs changes the config, not the code:

  * by monthly after-tax pay (`payroll.after_tax_pay`): ≤ 3000 → 0.5 %, 3000 < pay ≤ 5000 → 1 %,
    5000 < pay ≤ 10000 → 1.5 %, > 10000 → 2 %. An edge belongs to the lower bracket
    (3000.00 → 15.00; 3000.01 → 30.00). `brackets: [{up_to: 3000, rate: 0.005}, …, {up_to: null, rate: 0.02}]`.
  * retirees (membership `dues_category: retiree`, or HR `employment_status: retired`), by pension
    (the retiree's payroll row): ≤ 5000 → 0.5 %, above → 1 % (`retiree_brackets`).
  * students, the unemployed and members on subsistence allowance (`dues_category` student |
    unemployed | subsistence): a flat 0.2 yuan a month (`special_monthly`).
  * probationary members pay like full members.
Amounts are rounded half-up to the fen (Decimal arithmetic, never binary floats).

A pay change applies from the month the new pay starts: a month without its own payroll row uses
the latest earlier one (up to `CARRY_MONTHS` back); with none the expected amount is unknown and
the month is not judged for underpayment. A member owes dues from the month of `joined_on`.

Payments are the `dues_payments` kind (employee_no + month → amount, paid_on), synced from any
source like every other kind; a back payment is recorded against the month it pays for.
"""
from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Connection, bindparam, text
from sqlalchemy.orm import Session

FEN = Decimal("0.01")
SPECIAL_CATEGORIES = ("student", "unemployed", "subsistence")
RETIREE = "retiree"
CARRY_MONTHS = 12  # how far back a month without payroll looks for the pay in force
# Defaults: reference/party-rules.md "Dues" (the 2008 regulation).
DEFAULT_BRACKETS = [
    {"up_to": 3000, "rate": 0.005},
    {"up_to": 5000, "rate": 0.01},
    {"up_to": 10000, "rate": 0.015},
    {"up_to": None, "rate": 0.02},
]
DEFAULT_RETIREE_BRACKETS = [{"up_to": 5000, "rate": 0.005}, {"up_to": None, "rate": 0.01}]
DEFAULT_SPECIAL_MONTHLY = 0.2
REGULATION = "关于中国共产党党费收缴、使用和管理的规定"  # in force 2008-04-01


class BracketSchema(Schema):
    class Meta:
        unknown = RAISE

    up_to = fields.Float(required=True, allow_none=True, validate=validate.Range(min=0))
    rate = fields.Float(required=True, validate=validate.Range(min=0, max=1))


def _check_brackets(brackets: list[dict[str, Any]], name: str) -> None:
    if not brackets:
        raise ValidationError("at least one bracket", name)
    edges = [b["up_to"] for b in brackets]
    if edges[-1] is not None or any(e is None for e in edges[:-1]):
        raise ValidationError("only the last bracket has up_to: null (no upper edge)", name)
    if any(a >= b for a, b in zip(edges[:-2], edges[1:-1])):
        raise ValidationError("up_to edges must increase", name)


class DuesRatesSchema(Schema):
    """The rates part of `rules.dues_underpaid` (mixed into the rule's thresholds)."""

    brackets = fields.List(fields.Nested(BracketSchema), load_default=lambda: [dict(b) for b in DEFAULT_BRACKETS])
    retiree_brackets = fields.List(fields.Nested(BracketSchema),
                                   load_default=lambda: [dict(b) for b in DEFAULT_RETIREE_BRACKETS])
    special_monthly = fields.Float(load_default=DEFAULT_SPECIAL_MONTHLY, validate=validate.Range(min=0))

    @validates_schema
    def _edges(self, data: dict[str, Any], **_: Any) -> None:
        _check_brackets(data.get("brackets", DEFAULT_BRACKETS), "brackets")
        _check_brackets(data.get("retiree_brackets", DEFAULT_RETIREE_BRACKETS), "retiree_brackets")


@dataclass(frozen=True)
class DuesPolicy:
    brackets: tuple[tuple[Decimal | None, Decimal], ...]
    retiree_brackets: tuple[tuple[Decimal | None, Decimal], ...]
    special_monthly: Decimal

    @classmethod
    def from_thresholds(cls, thresholds: dict[str, Any] | None = None) -> DuesPolicy:
        t = thresholds if thresholds and "brackets" in thresholds else DuesRatesSchema().load(
            {k: v for k, v in (thresholds or {}).items() if k in ("brackets", "retiree_brackets", "special_monthly")})

        def table(rows: list[dict[str, Any]]) -> tuple[tuple[Decimal | None, Decimal], ...]:
            return tuple((None if r["up_to"] is None else _dec(r["up_to"]), _dec(r["rate"])) for r in rows)

        return cls(table(t["brackets"]), table(t["retiree_brackets"]), _dec(t["special_monthly"]))

    def rate(self, base: Decimal, retiree: bool) -> Decimal:
        for up_to, rate in self.retiree_brackets if retiree else self.brackets:
            if up_to is None or base <= up_to:
                return rate
        raise AssertionError("the last bracket has no upper edge")  # guaranteed by the schema

    def expected(self, pay: float | Decimal | None, dues_category: str | None = None,
                 retired: bool = False) -> tuple[Decimal | None, Decimal | None, str]:
        """(expected amount, rate, basis) for one month; amount None when the pay is unknown."""
        if dues_category in SPECIAL_CATEGORIES:
            return self.special_monthly.quantize(FEN, rounding=ROUND_HALF_UP), None, dues_category
        retiree = dues_category == RETIREE or retired
        if pay is None:
            return None, None, "retiree" if retiree else "pay"
        base = _dec(pay)
        rate = self.rate(base, retiree)
        return (base * rate).quantize(FEN, rounding=ROUND_HALF_UP), rate, "retiree" if retiree else "pay"


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


# --- months ------------------------------------------------------------------------------------


def month_index(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def month_label(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def completed_months(today: dt.date, count: int) -> list[str]:
    """The last `count` calendar months that ended before `today`, oldest first."""
    current = today.year * 12 + today.month - 1
    return [month_label(i) for i in range(current - count, current)]


def parse_month(value: str) -> str:
    try:
        dt.date.fromisoformat(f"{value}-01")
    except ValueError:
        raise ValueError(f"month '{value}' is not YYYY-MM") from None
    return value


# --- member months ----------------------------------------------------------------------------


@dataclass
class MemberMonth:
    """One member's dues for one month: who, base, rate, expected and paid."""

    person_id: int
    name: str
    employee_no: str | None
    id_number_masked: str | None
    org_unit_code: str | None
    employment_status: str | None
    political_status: str | None
    membership_id: int
    party_org_code: str | None
    category: str | None
    dues_category: str | None
    month: str
    base: Decimal | None
    rate: Decimal | None
    basis: str
    expected: Decimal | None
    paid: Decimal | None
    paid_on: dt.date | None

    @property
    def unpaid(self) -> bool:
        return self.paid is None or self.paid <= 0

    @property
    def underpaid(self) -> bool:
        return not self.unpaid and self.expected is not None and self.paid is not None and self.paid < self.expected


_MEMBERS = """
SELECT p.id AS person_id, p.name, p.employee_no, p.id_number_masked, p.org_unit_code,
       p.employment_status, p.political_status,
       m.id AS membership_id, m.party_org_code, m.category, m.dues_category, m.joined_on
FROM memberships m JOIN persons p ON p.id = m.person_id
WHERE m.active = :yes AND m.status = 'active' {where}
ORDER BY m.party_org_code, p.name, p.id, m.id
"""


def _in_orgs(codes: Sequence[str] | None) -> tuple[str, dict[str, Any]]:
    if codes is None:
        return "", {}
    return "AND m.party_org_code IN :codes", {"codes": list(codes)}


def member_months(conn: Connection, months: Sequence[str], policy: DuesPolicy,
                  party_org_codes: Sequence[str] | None = None) -> list[MemberMonth]:
    """Every active member (of `party_org_codes`, default all) for each of `months` they were a
    member in: three set-based queries (members, payroll in the window, payments), joined here."""
    if not months:
        return []
    where, params = _in_orgs(party_org_codes)
    stmt = text(_MEMBERS.format(where=where))
    if "codes" in params:
        if not params["codes"]:
            return []
        stmt = stmt.bindparams(bindparam("codes", expanding=True))
    members = list(conn.execute(stmt, {"yes": True} | params))
    if not members:
        return []
    first, last = min(months), max(months)
    pay_from = month_label(month_index(first) - CARRY_MONTHS)
    scoped = ("AND m.party_org_code IN :codes" if party_org_codes is not None else "")

    def scoped_rows(sql: str, **extra: Any) -> list[Any]:
        s = text(sql.format(scoped=scoped))
        if party_org_codes is not None:
            s = s.bindparams(bindparam("codes", expanding=True))
        return list(conn.execute(s, {"yes": True} | params | extra))

    pays: dict[int, list[tuple[str, float | None]]] = defaultdict(list)
    for r in scoped_rows("""
        SELECT DISTINCT p.id AS person_id, y.month, y.after_tax_pay
        FROM payroll y JOIN persons p ON p.employee_no = y.employee_no
        JOIN memberships m ON m.person_id = p.id AND m.active = :yes AND m.status = 'active' {scoped}
        WHERE y.active = :yes AND y.month >= :pay_from AND y.month <= :last
        ORDER BY person_id, month
    """, pay_from=pay_from, last=last):
        pays[r.person_id].append((r.month, r.after_tax_pay))
    paid: dict[tuple[int, str], tuple[float | None, Any]] = {}
    for r in scoped_rows("""
        SELECT DISTINCT p.id AS person_id, d.month, d.amount, d.paid_on
        FROM dues_payments d JOIN persons p ON p.employee_no = d.employee_no
        JOIN memberships m ON m.person_id = p.id AND m.active = :yes AND m.status = 'active' {scoped}
        WHERE d.active = :yes AND d.month >= :first AND d.month <= :last
    """, first=first, last=last):
        paid[(r.person_id, r.month)] = (r.amount, r.paid_on)

    out: list[MemberMonth] = []
    for m in members:
        joined = _as_date(m.joined_on)
        joined_month = f"{joined.year:04d}-{joined.month:02d}" if joined else None
        history = pays.get(m.person_id, [])
        for month in months:
            if joined_month and month < joined_month:
                continue
            pay = _pay_in_force(history, month)
            expected, rate, basis = policy.expected(pay, m.dues_category, m.employment_status == "retired")
            amount, paid_on = paid.get((m.person_id, month), (None, None))
            out.append(MemberMonth(
                person_id=m.person_id, name=m.name, employee_no=m.employee_no,
                id_number_masked=m.id_number_masked, org_unit_code=m.org_unit_code,
                employment_status=m.employment_status, political_status=m.political_status,
                membership_id=m.membership_id, party_org_code=m.party_org_code, category=m.category,
                dues_category=m.dues_category, month=month,
                base=None if pay is None or basis in SPECIAL_CATEGORIES else _dec(pay),
                rate=rate, basis=basis, expected=expected,
                paid=None if amount is None else _dec(amount).quantize(FEN), paid_on=_as_date(paid_on)))
    return out


def _pay_in_force(history: list[tuple[str, float | None]], month: str) -> float | None:
    """The pay of `month`, else of the latest earlier month on record (history sorted by month)."""
    pay = None
    for m, amount in history:
        if m > month:
            break
        if amount is not None:
            pay = amount
    return pay


def _as_date(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def tracked(conn: Connection) -> bool:
    """Whether any dues payment is stored at all (until then dues are not judged)."""
    return conn.execute(text("SELECT 1 FROM dues_payments WHERE active = :yes"), {"yes": True}).first() is not None


def collection_rate(rows: Iterable[MemberMonth]) -> dict[str, Any]:
    """Paid against expected over `rows` with a known expected amount (overpayment capped per
    member-month, so one member's advance does not hide another's gap)."""
    expected = paid = Decimal(0)
    judged = 0
    for r in rows:
        if r.expected is None:
            continue
        judged += 1
        expected += r.expected
        paid += min(r.paid or Decimal(0), r.expected)
    return {"expected": float(expected), "paid": float(paid), "member_months": judged,
            "rate": None if expected == 0 else round(float(paid / expected), 4)}


# --- the monthly sheet ------------------------------------------------------------------------

SHEET_COLUMNS = ("序号", "姓名", "工号", "党员类别", "缴费基数(元)", "比例", "应交(元)", "实交(元)",
                 "交纳日期", "状态")
CATEGORY_LABELS = {"full": "正式党员", "probationary": "预备党员"}
BASIS_LABELS = {"student": "学生 0.2元/月", "unemployed": "失业 0.2元/月", "subsistence": "低保 0.2元/月"}


def sheet_rows(session: Session, branch_code: str, month: str, policy: DuesPolicy | None = None) -> list[MemberMonth]:
    return member_months(session.connection(), [parse_month(month)], policy or DuesPolicy.from_thresholds(),
                         [branch_code])


def status_of(row: MemberMonth) -> str:
    if row.unpaid:
        return "未交"
    if row.expected is None:
        return "已交(基数未知)"
    if row.paid is not None and row.paid < row.expected:
        return f"少交 {row.expected - row.paid}"
    return "已交"


def build_dues_sheet(session: Session, branch: Any, month: str, policy: DuesPolicy | None = None) -> bytes:
    """The monthly dues sheet (党费收缴表) of one branch as XLSX bytes: one row per member with
    base, rate, expected, paid, date and status, then the totals. `branch` is a code or a PartyOrg."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    code = branch if isinstance(branch, str) else branch.code
    name_row = session.execute(text("SELECT name FROM party_orgs WHERE code = :c"), {"c": code}).first()
    if name_row is None:
        raise LookupError(f"unknown party org '{code}'")
    rows = sheet_rows(session, code, month, policy)
    wb = Workbook()
    ws = wb.active
    ws.title = month
    ws.append([f"{name_row.name} 党费收缴表 {month}"])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append([f"党组织代码 {code}", "", "", f"依据: {REGULATION}"])
    ws.append(list(SHEET_COLUMNS))
    for cell in ws[3]:
        cell.font = Font(bold=True)
    for i, r in enumerate(rows, start=1):
        rate = (f"{(r.rate * 100).normalize():f}%" if r.rate is not None
                else BASIS_LABELS.get(r.basis, ""))
        ws.append([i, r.name, r.employee_no or "", CATEGORY_LABELS.get(r.category or "", r.category or ""),
                   None if r.base is None else float(r.base), rate,
                   None if r.expected is None else float(r.expected),
                   None if r.paid is None else float(r.paid),
                   r.paid_on.isoformat() if r.paid_on else "", status_of(r)])
    totals = collection_rate(rows)
    ws.append([])
    ws.append(["合计", f"{len(rows)} 人", "", "", "", "", totals["expected"],
               float(sum((r.paid or Decimal(0)) for r in rows)), "",
               "" if totals["rate"] is None else f"收缴率 {totals['rate']:.2%}"])
    for column, width in zip("ABCDEFGHIJ", (6, 12, 12, 10, 14, 14, 10, 10, 12, 16)):
        ws.column_dimensions[column].width = width
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
