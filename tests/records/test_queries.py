"""records.queries: shared query pieces read the same rows on every database."""
from __future__ import annotations

import pytest
from sqlalchemy import Engine, insert, select

from records.models import OrgUnit
from records.queries import among


@pytest.mark.parametrize("wanted", [[], ["U2"], ["U1", "U3", "U404"]], ids=["none", "one", "several"])
def test_among_selects_the_listed_values_by_id_and_by_text(engine: Engine, wanted: list[str]) -> None:
    table = OrgUnit.__table__
    with engine.begin() as conn:
        conn.execute(insert(table), [{"code": f"U{n}", "name": f"部门{n}", "kind": "department"} for n in (1, 2, 3)])
        ids = dict(conn.execute(select(table.c.code, table.c.id)).all())
        dialect = conn.dialect.name
        by_text = conn.execute(select(table.c.code).where(among(table.c.code, wanted, dialect))).scalars()
        assert sorted(by_text) == sorted(set(wanted) & set(ids))
        wanted_ids = [ids[c] for c in wanted if c in ids] + [10_000]
        by_id = conn.execute(select(table.c.code).where(among(table.c.id, iter(wanted_ids), dialect))).scalars()
        assert sorted(by_id) == sorted(set(wanted) & set(ids))
