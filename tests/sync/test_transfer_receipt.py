"""Issue 7, transfers: the receipt (回执) and the cancellation (作废) of a transfer letter —
service (sync.transfers.receive / cancel), their audit rows, `transfer_stale` after a receipt,
and the CLI (`dualline transfers receive|cancel`)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from records.db import session_factory
from records.models import AuditLog, Mismatch, Transfer
from sync.resolutions import resolve
from sync.rules.engine import RuleSet
from sync.transfers import TransferError, cancel, receive
from tests.sync.conftest import Site, make_site

ISSUED = dt.date(2025, 3, 1)


@pytest.fixture
def site(tmp_path: Path, sqlite_url: str) -> Site:
    site = make_site(tmp_path / "src", sqlite_url, staff=300, seed=23)
    assert site.sync().status == "succeeded"
    return site


def _transfer(site: Site) -> int:
    """Resolve the first open branch_mismatch with a transfer, issued on ISSUED."""
    with session_factory(site.runtime.engine)() as s, s.begin():
        m = s.scalars(select(Mismatch).where(Mismatch.rule == "branch_mismatch", Mismatch.state == "open",
                                             Mismatch.closed_at.is_(None)).order_by(Mismatch.id)).first()
        assert m is not None, "the generated enterprise has no open branch_mismatch"
        outcome = resolve(s, m.id, "transfer", "officer1", "moved with the department", letter_no="2025第0001号",
                          today=ISSUED)
        return outcome.transfer.id


def _stale(site: Site, today: dt.date) -> set[int]:
    with session_factory(site.runtime.engine)() as s:
        found = RuleSet.from_config({}).detect(s, today)["transfer_stale"]
    return {v.details["transfer"]["id"] for v in found}


def _audit(site: Site, action: str) -> list[AuditLog]:
    with session_factory(site.runtime.engine)() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


def test_receive_records_the_receipt_audits_and_ends_staleness(site: Site) -> None:
    tid = _transfer(site)
    late = ISSUED + dt.timedelta(days=200)
    assert tid in _stale(site, late)  # issued, past its validity, no receipt
    with session_factory(site.runtime.engine)() as s, s.begin():
        with pytest.raises(TransferError) as early:
            receive(s, tid, "officer1", ISSUED - dt.timedelta(days=1))
        assert early.value.code == "before_issued"
    with session_factory(site.runtime.engine)() as s, s.begin():
        t = receive(s, tid, "officer1", dt.date(2025, 4, 2))
        assert t.status == "received"
    with session_factory(site.runtime.engine)() as s:
        t = s.get(Transfer, tid)
        assert (t.status, t.received_on) == ("received", dt.date(2025, 4, 2))
    (row,) = _audit(site, "transfer.receive")
    assert (row.actor, row.target_type, row.target_id) == ("officer1", "transfer", str(tid))
    assert row.details["received_on"] == "2025-04-02" and row.details["letter_no"] == "2025第0001号"
    assert tid not in _stale(site, late)
    # received once: neither a second receipt nor a cancellation
    for act in (lambda s: receive(s, tid, "officer1"), lambda s: cancel(s, tid, "officer1", "mistake")):
        with session_factory(site.runtime.engine)() as s, s.begin():
            with pytest.raises(TransferError) as refused:
                act(s)
            assert refused.value.code == "not_issued" and "received" in refused.value.message
    assert len(_audit(site, "transfer.receive")) == 1 and not _audit(site, "transfer.cancel")


def test_receive_defaults_to_today(site: Site) -> None:
    tid = _transfer(site)
    with session_factory(site.runtime.engine)() as s, s.begin():
        receive(s, tid, "admin")
    with session_factory(site.runtime.engine)() as s:
        assert s.get(Transfer, tid).received_on == dt.date.today()


def test_cancel_needs_a_reason_audits_and_is_final(site: Site) -> None:
    tid = _transfer(site)
    for reason in ("", "   ", "x" * 2001):
        with session_factory(site.runtime.engine)() as s, s.begin():
            with pytest.raises(TransferError) as refused:
                cancel(s, tid, "officer1", reason)
            assert refused.value.code in ("reason_required", "reason_too_long")
    with session_factory(site.runtime.engine)() as s, s.begin():
        cancel(s, tid, "officer1", "  the member stays  ")
    with session_factory(site.runtime.engine)() as s:
        t = s.get(Transfer, tid)
        assert t.status == "cancelled" and t.received_on is None
    (row,) = _audit(site, "transfer.cancel")
    assert row.actor == "officer1" and row.details["reason"] == "the member stays"
    assert row.details["status"] == ["issued", "cancelled"]
    assert tid not in _stale(site, ISSUED + dt.timedelta(days=200))
    for act in (lambda s: receive(s, tid, "officer1"), lambda s: cancel(s, tid, "officer1", "again")):
        with session_factory(site.runtime.engine)() as s, s.begin():
            with pytest.raises(TransferError) as refused:
                act(s)
            assert refused.value.code == "not_issued" and "cancelled" in refused.value.message


def test_unknown_transfer(site: Site) -> None:
    with session_factory(site.runtime.engine)() as s, s.begin():
        with pytest.raises(TransferError) as missing:
            receive(s, 987654, "officer1")
        assert missing.value.code == "not_found"
        with pytest.raises(TransferError):
            cancel(s, 987654, "officer1", "why")


def test_cli_receive_and_cancel(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from web.cli import cli

    first = _transfer(site)
    second = _transfer(site)
    assert first != second
    config = tmp_path / "dualline.yaml"
    config.write_text(json.dumps({"database": site.runtime.config.database}), encoding="utf-8")
    monkeypatch.setenv("DUALLINE_CONFIG", str(config))
    monkeypatch.setenv("DUALLINE_SECRET_KEY", site.runtime.config.secret_key)
    runner = CliRunner()
    bad_date = runner.invoke(cli, ["transfers", "receive", str(first), "--on", "2025-13-01"])
    assert bad_date.exit_code == 2 and "--on" in bad_date.output
    early = runner.invoke(cli, ["transfers", "receive", str(first), "--on", "2025-02-01"])
    assert early.exit_code == 2 and "before" in early.output
    done = runner.invoke(cli, ["transfers", "receive", str(first), "--on", "2025-03-20"], catch_exceptions=False)
    assert done.exit_code == 0 and "2025-03-20" in done.output
    again = runner.invoke(cli, ["transfers", "receive", str(first)])
    assert again.exit_code == 2 and "received" in again.output
    assert runner.invoke(cli, ["transfers", "receive", "987654"]).exit_code == 2
    assert runner.invoke(cli, ["transfers", "cancel", str(second)]).exit_code == 2  # --reason is required
    assert runner.invoke(cli, ["transfers", "cancel", str(second), "--reason", " "]).exit_code == 2
    cancelled = runner.invoke(cli, ["transfers", "cancel", str(second), "--reason", "退回"], catch_exceptions=False)
    assert cancelled.exit_code == 0, cancelled.output
    assert runner.invoke(cli, ["transfers", "cancel", str(second), "--reason", "again"]).exit_code == 2
    assert runner.invoke(cli, ["transfers", "cancel", "987654", "--reason", "x"]).exit_code == 2
    with session_factory(site.runtime.engine)() as s:
        assert s.get(Transfer, first).status == "received" and s.get(Transfer, second).status == "cancelled"
    assert [a.actor for a in _audit(site, "transfer.receive") + _audit(site, "transfer.cancel")] == ["cli", "cli"]
