"""SQL shared by the organization rules: member counts per party org, in one GROUP BY.

Counted are active memberships (`memberships.active` and status `active`, as alignment counts
them) registered directly with the org; `org_subtree_counts` adds those of every org below it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Date, bindparam, text

from sync.alignment import MAX_TREE_DEPTH
from sync.rules.base import ACTIVE_MEMBERSHIP_SQL, RuleContext

_COUNTS = """
    COUNT(m.id) AS members,
    SUM(CASE WHEN m.category = 'full' THEN 1 ELSE 0 END) AS full_members,
    SUM(CASE WHEN m.category = 'probationary' THEN 1 ELSE 0 END) AS probationary_members
"""

_BRANCH_COUNTS = f"""
SELECT o.id, o.code, o.name, o.kind, o.has_committee, {_COUNTS}
FROM party_orgs o
LEFT JOIN memberships m ON m.party_org_code = o.code AND {ACTIVE_MEMBERSHIP_SQL}
WHERE o.active = :yes AND o.kind = 'branch'
GROUP BY o.id, o.code, o.name, o.kind, o.has_committee
"""

# Every active org paired with itself and each active org below it (parent_code links); the depth
# bound ends the walk if bad data has a cycle, as in alignment's walk down the org-unit tree.
# Members are counted once per org (`direct`) and those counts summed over each subtree: joining
# the memberships to every (org, descendant) pair counted each member once per ancestor.
_SUBTREE_COUNTS = f"""
WITH RECURSIVE subtree (root_code, code, depth) AS (
    SELECT code, code, 0 FROM party_orgs WHERE active = :yes AND kind IN :kinds
    UNION ALL
    SELECT s.root_code, c.code, s.depth + 1
    FROM subtree s JOIN party_orgs c ON c.parent_code = s.code
    WHERE c.active = :yes AND s.depth < {MAX_TREE_DEPTH}
),
direct (code, members, full_members, probationary_members) AS (
    SELECT m.party_org_code, COUNT(m.id),
           SUM(CASE WHEN m.category = 'full' THEN 1 ELSE 0 END),
           SUM(CASE WHEN m.category = 'probationary' THEN 1 ELSE 0 END)
    FROM memberships m WHERE {ACTIVE_MEMBERSHIP_SQL}
    GROUP BY m.party_org_code
)
SELECT o.id, o.code, o.name, o.kind,
       COALESCE(SUM(d.members), 0) AS members,
       COALESCE(SUM(d.full_members), 0) AS full_members,
       COALESCE(SUM(d.probationary_members), 0) AS probationary_members
FROM subtree s
JOIN party_orgs o ON o.code = s.root_code
LEFT JOIN direct d ON d.code = s.code
GROUP BY o.id, o.code, o.name, o.kind
"""


def select_where(ctx: RuleContext, query: str, where: str, dates: tuple[str, ...] = (),
                 order: str = "c.code", **params: Any) -> list[Any]:
    """Rows of `query` (wrapped, so that `where` can name its aggregate columns portably) that
    satisfy `where`, in a stable order. Parameters named in `dates` are bound as DATE on every
    backend (SQLite stores dates as text; a bare Python date would rely on a deprecated adapter)."""
    stmt = text(f"SELECT * FROM ({query}) c WHERE {where} ORDER BY {order}")
    stmt = stmt.bindparams(*(bindparam(name, type_=Date) for name in dates))
    if "kinds" in params:
        stmt = stmt.bindparams(bindparam("kinds", expanding=True))
    return list(ctx.conn.execute(stmt, ctx.sql_params(**params)))


def branch_counts(ctx: RuleContext, keep: Callable[[Any], bool]) -> list[Any]:
    """Active branches with their direct members (`members`, `full_members`,
    `probationary_members`, and `has_committee`) for which `keep(row)` holds, by code. The
    counts are read once per evaluation (`ctx.shared`): three rules judge the same numbers."""
    rows = ctx.shared.get("branch_counts")
    if rows is None:
        rows = ctx.shared["branch_counts"] = select_where(ctx, _BRANCH_COUNTS, "1 = 1")
    return [row for row in rows if keep(row)]


def org_subtree_counts(ctx: RuleContext, kinds: tuple[str, ...], where: str, **params: Any) -> list[Any]:
    """Active orgs of `kinds` with the members of their whole subtree, that satisfy `where`."""
    return select_where(ctx, _SUBTREE_COUNTS, where, kinds=list(kinds), **params)
