"""Query pieces several readers share (CLI, console, API)."""
from __future__ import annotations

from sqlalchemy import ColumnElement, true

from records.models import Mismatch

MISMATCH_STATES = ("open", "resolved", "ignored", "closed", "all")


def mismatch_state_filter(state: str) -> ColumnElement[bool]:
    """`closed` means the data agrees now (closed_at set, whatever the person's decision was);
    open / resolved / ignored are live mismatches in that state; `all` is everything."""
    if state == "closed":
        return Mismatch.closed_at.is_not(None)
    if state == "all":
        return true()
    return (Mismatch.state == state) & Mismatch.closed_at.is_(None)
