"""Synthetic enterprises for benchmarks, demos and end-to-end tests.

`benchmarks.enterprise.generate()` builds a fictional state-owned energy group (business line and
party line) with planted dual-line disagreements; `benchmarks.answer_key` is the independent
oracle that says which mismatches and quarantines the engine must report; `benchmarks.writers`
writes the demo's source files; `benchmarks.fake_source` serves an enterprise as a paginated REST
API. Nothing here imports the engine packages: the oracle must not share the engine's mistakes.
"""
