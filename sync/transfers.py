"""Membership transfers (组织关系转接): listing them and the printable letter's data.

The `transfers` table is written by the console's transfer resolution (a resolved
`branch_mismatch`, or a manual transfer); this module reads it. The letter (党员组织关系介绍信,
a three-part form: stub / letter / receipt) carries, per reference/party-rules.md "Membership
transfer": name, sex, age, ethnicity, full or probationary, ID number, from / to, dues paid up to
(year-month) and validity (commonly ≤3 months, ≤6 across provinces; `transfer_stale` watches it).

ID numbers on the letter are masked (`110105********1234`) unless the caller may see sensitive
data (`reveal=True`: an operator's flag on the CLI, `read:sensitive` elsewhere) — the printed
letter then carries the full number, decrypted only for that one letter.

Receipt and cancellation: `receive` (issued → received, the receipt's date, not before the letter
was issued) and `cancel` (issued → cancelled, a reason required); both leave an AuditLog row
(`transfer.receive` / `transfer.cancel`). A received or cancelled transfer is no longer watched
by `transfer_stale` (it looks at issued ones only).

Letter numbers: `next_letter_no` gives `<year>第<NNNN>号` (4 digits, counted per issuing year
over all transfers) for callers that do not bring their own number.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from mappings.codes import _ETHNIC_NAMES
from records.crypto import FieldCipher
from records.models import AuditLog, PartyOrg, Person, Transfer, utcnow

DEFAULT_VALIDITY_MONTHS = 3  # reference/party-rules.md; `rules.transfer_stale.validity_months`
GENDER_LABELS = {"1": "男", "2": "女"}
CATEGORY_LABELS = {"full": "正式党员", "probationary": "预备党员"}
KIND_LABELS = {"internal": "内部转接", "out": "转出", "in": "转入"}
STATUS_LABELS = {"issued": "已开具", "received": "已回执", "cancelled": "已作废"}


def ethnicity_label(code: str | None) -> str | None:
    """GB/T 3304 code → name ("01" → 汉族); unknown codes are shown as they are."""
    if not code:
        return None
    if code == "97":
        return "其他"
    if code == "98":
        return "外国血统"
    if code.isdigit() and 1 <= int(code) <= len(_ETHNIC_NAMES):
        return _ETHNIC_NAMES[int(code) - 1]
    return code


def age_on(birth: dt.date | None, day: dt.date) -> int | None:
    if birth is None:
        return None
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def next_letter_no(session: Session, issued_on: dt.date) -> str:
    """`<year>第<NNNN>号`: one more than the letters already issued in that year."""
    start, end = dt.date(issued_on.year, 1, 1), dt.date(issued_on.year + 1, 1, 1)
    count = session.scalar(select(func.count(Transfer.id))
                           .where(Transfer.issued_on >= start, Transfer.issued_on < end)) or 0
    return f"{issued_on.year}第{count + 1:04d}号"


@dataclass
class Letter:
    """The fields of a 党员组织关系介绍信, ready to print (Chinese labels in `LETTER_LABELS`)."""

    transfer_id: int
    letter_no: str | None
    kind: str
    status: str
    name: str
    gender: str | None
    age: int | None
    ethnicity: str | None
    category: str | None
    id_number: str | None
    from_org_code: str | None
    from_org: str | None
    to_org_code: str | None
    to_org: str | None
    dues_paid_until: str | None  # YYYY-MM
    issued_on: str
    valid_until: str | None
    validity_days: int | None
    received_on: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


LETTER_LABELS = {
    "letter_no": "介绍信编号", "name": "姓名", "gender": "性别", "age": "年龄", "ethnicity": "民族",
    "category": "党员类别", "id_number": "公民身份号码", "from_org": "转出党组织", "to_org": "转往党组织",
    "dues_paid_until": "党费交到", "issued_on": "开具日期", "valid_until": "有效期至",
    "validity_days": "有效期(天)", "received_on": "回执日期", "status": "状态",
}


def _query():
    src, dst = aliased(PartyOrg), aliased(PartyOrg)
    return (select(Transfer, Person, src.name, dst.name)
            .join(Person, Person.id == Transfer.person_id)
            .outerjoin(src, src.code == Transfer.from_party_org_code)
            .outerjoin(dst, dst.code == Transfer.to_party_org_code))


def _letter(t: Transfer, p: Person, from_name: str | None, to_name: str | None,
            cipher: FieldCipher | None, reveal: bool) -> Letter:
    if reveal and cipher is not None and p.id_number_enc:
        id_number = cipher.decrypt(p.id_number_enc)
    else:
        id_number = p.id_number_masked
    return Letter(
        transfer_id=t.id, letter_no=t.letter_no, kind=t.kind, status=t.status, name=p.name,
        gender=GENDER_LABELS.get(p.gender or "", p.gender), age=age_on(p.birth_date, t.issued_on),
        ethnicity=ethnicity_label(p.ethnicity), category=CATEGORY_LABELS.get(t.category or "", t.category),
        id_number=id_number,
        from_org_code=t.from_party_org_code, from_org=from_name or t.from_party_org_code,
        to_org_code=t.to_party_org_code, to_org=to_name or t.to_org_name or t.to_party_org_code,
        dues_paid_until=t.dues_paid_until.strftime("%Y-%m") if t.dues_paid_until else None,
        issued_on=t.issued_on.isoformat(),
        valid_until=t.valid_until.isoformat() if t.valid_until else None,
        validity_days=(t.valid_until - t.issued_on).days if t.valid_until else None,
        received_on=t.received_on.isoformat() if t.received_on else None,
    )


def list_transfers(session: Session, *, status: str | None = None,
                   party_org_codes: list[str] | None = None, limit: int | None = None,
                   offset: int = 0) -> list[Letter]:
    """Transfers (newest first), optionally of one status and touching some party orgs; `limit`
    and `offset` page through them."""
    q = _query().order_by(Transfer.issued_on.desc(), Transfer.id.desc())
    if status:
        q = q.where(Transfer.status == status)
    if party_org_codes is not None:
        q = q.where(Transfer.from_party_org_code.in_(party_org_codes)
                    | Transfer.to_party_org_code.in_(party_org_codes))
    if limit is not None:
        q = q.limit(limit).offset(offset)
    return [_letter(t, p, fn, tn, None, False) for t, p, fn, tn in session.execute(q)]


def letter_data(session: Session, transfer_id: int, *, cipher: FieldCipher | None = None,
                reveal: bool = False) -> Letter:
    """The printable letter of one transfer; LookupError when there is none."""
    row = session.execute(_query().where(Transfer.id == transfer_id)).first()
    if row is None:
        raise LookupError(f"no transfer {transfer_id}")
    return _letter(*row, cipher, reveal)


REASON_MAX = 2000


class TransferError(Exception):
    """A receipt or cancellation that cannot be taken: `code` for translated messages
    (not_found | not_issued | before_issued | reason_required | reason_too_long)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _issued(session: Session, transfer_id: int) -> Transfer:
    t = session.scalars(select(Transfer).where(Transfer.id == transfer_id).with_for_update()).one_or_none()
    if t is None:
        raise TransferError("not_found", f"no transfer {transfer_id}")
    if t.status != "issued":
        label = STATUS_LABELS.get(t.status, t.status)
        raise TransferError("not_issued", f"transfer {transfer_id} is {t.status} ({label}): only an issued one can change")
    return t


def _details(t: Transfer) -> dict[str, Any]:
    return {"person_id": t.person_id, "letter_no": t.letter_no, "kind": t.kind,
            "from_party_org_code": t.from_party_org_code, "to_party_org_code": t.to_party_org_code,
            "issued_on": t.issued_on.isoformat()}


def receive(session: Session, transfer_id: int, actor: str, received_on: dt.date | None = None) -> Transfer:
    """The receipt came back: issued → received on `received_on` (default today), audited.

    Inside the caller's transaction (it commits). TransferError when there is no such transfer,
    it is not issued (received or cancelled already), or the date lies before the letter's."""
    t = _issued(session, transfer_id)
    day = received_on or dt.date.today()
    if day < t.issued_on:
        raise TransferError("before_issued",
                            f"the receipt date {day.isoformat()} is before the letter was issued ({t.issued_on.isoformat()})")
    t.status, t.received_on = "received", day
    session.add(AuditLog(actor=actor, action="transfer.receive", target_type="transfer", target_id=str(t.id),
                         at=utcnow(), details=_details(t) | {"received_on": day.isoformat(),
                                                              "status": ["issued", "received"]}))
    session.flush()
    return t


def cancel(session: Session, transfer_id: int, actor: str, reason: str) -> Transfer:
    """The letter is withdrawn: issued → cancelled, with a reason (required), audited.

    Inside the caller's transaction (it commits). TransferError as for `receive`, and when the
    reason is missing or too long. The membership is left as it is (a move back is a new decision)."""
    reason = (reason or "").strip()
    if not reason:
        raise TransferError("reason_required", "a reason is required")
    if len(reason) > REASON_MAX:
        raise TransferError("reason_too_long", f"the reason is longer than {REASON_MAX} characters")
    t = _issued(session, transfer_id)
    t.status = "cancelled"
    session.add(AuditLog(actor=actor, action="transfer.cancel", target_type="transfer", target_id=str(t.id),
                         at=utcnow(), details=_details(t) | {"reason": reason, "status": ["issued", "cancelled"]}))
    session.flush()
    return t


def party_orgs_of(session: Session, transfer_id: int) -> tuple[str | None, str | None] | None:
    """(from, to) party-org codes of a transfer, or None when there is none (for scope checks)."""
    row = session.execute(select(Transfer.from_party_org_code, Transfer.to_party_org_code)
                          .where(Transfer.id == transfer_id)).first()
    return None if row is None else (row[0], row[1])


def count_transfers(session: Session, *, status: str | None = None,
                    party_org_codes: list[str] | None = None) -> int:
    q = select(func.count(Transfer.id))
    if status:
        q = q.where(Transfer.status == status)
    if party_org_codes is not None:
        q = q.where(Transfer.from_party_org_code.in_(party_org_codes)
                    | Transfer.to_party_org_code.in_(party_org_codes))
    return session.scalar(q) or 0
