"""Standardization (规范化) rules: the party line checked against the regulations.

One module per rule (id, regulation, severity, thresholds, set-based detection), listed in
`registry`; `engine.RuleSet` validates the `rules:` config block and reconciles the findings
into the mismatches table beside the dual-line mismatches (one queue for officers). They are
evaluated after alignment in every sync run (sync/engine.py) and on demand with
`dualline rules run`; `dualline rules list` shows them (sync/rules/cli.py).
Rule ids and numbers: reference/party-rules.md.
"""
from __future__ import annotations

from sync.rules.engine import RuleOutcome, RuleSet
from sync.rules.registry import RULES

__all__ = ["RULES", "RuleOutcome", "RuleSet"]
