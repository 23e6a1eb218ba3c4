"""Compile a validated MappingSpec into a fast `Mapping`.

Everything that can be decided once is decided at compile time: each field becomes a getter
(or, for the common single plain column, just the column name) and one small converter closure
holding its transform functions and code table. Mapping a record then runs a flat loop over
those tuples — no spec interpretation, regex compilation or copying per record.

Errors: a `MappingError` from a field gets `field` = the canonical field and `source_field` =
the column the value came from, so its text reads as the source's user knows it
(``所在党支部: unknown party org '第三支部'``) while the engine still sees the canonical field.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any

from mappings.base import MappedRecord, Mapping, MappingContext, MappingError, MappingSpecError
from mappings.spec import FieldSpec, KeySpec, KindSpec, MappingSpec
from mappings.transforms import CHECKS, CONTEXT_TRANSFORMS, TRANSFORMS

_ABSENT: Any = object()  # the column is not in the raw record at all

Getter = Callable[[dict[str, Any]], Any]
Converter = Callable[[Any, MappingContext], Any]
# Per-field plan: canonical name, plain column (or None), getter (when not a plain column),
# converter, required.
FieldPlan = tuple[str, str | None, Getter | None, Converter, bool]


def _is_empty(value: Any) -> bool:
    return value is None or (value.__class__ is str and not value.strip())


def _path_getter(path: str) -> Getter:
    """A getter for a dotted path; a column literally named ``a.b`` wins over the path."""
    steps = path.split(".")

    def get(raw: dict[str, Any]) -> Any:
        value = raw.get(path, _ABSENT)
        if value is not _ABSENT:
            return value
        value = raw
        for step in steps:
            if isinstance(value, dict):
                value = value.get(step, _ABSENT)
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                return _ABSENT
            if value is _ABSENT:
                return _ABSENT
        return value

    return get


def _single_getter(source: str) -> Getter:
    return _path_getter(source) if "." in source else lambda raw: raw.get(source, _ABSENT)


def _getter(sources: tuple[str, ...]) -> Getter:
    """First present non-empty alternative; empty if only empty ones are present; else absent."""
    if not any("." in source for source in sources):
        # Plain columns (the usual export with alternative headers): plain dict lookups.
        def get_column(raw: dict[str, Any]) -> Any:
            found = _ABSENT
            for source in sources:
                value = raw.get(source, _ABSENT)
                if value is _ABSENT:
                    continue
                # _is_empty inlined: this runs for every field of every export row.
                if value is not None and (value.__class__ is not str or value.strip()):
                    return value
                found = value
            return found

        return get_column

    getters = [_single_getter(source) for source in sources]

    def get(raw: dict[str, Any]) -> Any:
        found = _ABSENT
        for getter in getters:
            value = getter(raw)
            if value is _ABSENT:
                continue
            if not _is_empty(value):
                return value
            found = value
        return found

    return get


def _converter(spec: FieldSpec) -> Converter:
    """The closure turning one present raw value into the canonical value."""
    steps: list[tuple[Callable[..., Any], bool]] = [
        (CONTEXT_TRANSFORMS[name], True) if name in CONTEXT_TRANSFORMS else (TRANSFORMS[name], False)
        for name in spec.transforms
    ]
    if spec.table is not None:
        steps.append((spec.table.lookup, False))
    default, required = spec.default, spec.required

    def empty() -> Any:
        if required:
            raise MappingError("required")
        return default

    if not any(wants_ctx for _, wants_ctx in steps):
        # Nearly every field: plain calls, no per-step flag to test.
        functions = tuple(function for function, _ in steps)

        def convert(value: Any, ctx: MappingContext) -> Any:
            if value is None or (value.__class__ is str and not (value := value.strip())):
                return empty()
            for function in functions:
                value = function(value)
            return value
        return convert

    def convert(value: Any, ctx: MappingContext) -> Any:
        if value is None or (value.__class__ is str and not (value := value.strip())):
            return empty()
        for function, wants_ctx in steps:
            value = function(value, ctx) if wants_ctx else function(value)
        return value
    return convert


def _key_value(data: dict[str, Any], key: KeySpec) -> str | None:
    """The key text for one alternative, or None when a needed field is empty."""
    parts = []
    for name in key.fields:
        value = data.get(name)
        if value is None or value == "":
            if name not in key.optional:
                return None
            value = ""
        parts.append(str(value))
    return key.prefix + "|".join(parts)


class CompiledKind:
    """One kind of a mapping, ready to map records."""

    def __init__(self, kind: str, spec: KindSpec) -> None:
        self.kind = kind
        self._spec = spec
        self._plan: list[FieldPlan] = []
        for name, field_spec in spec.fields.items():
            sources = field_spec.sources
            plain = len(sources) == 1 and "." not in sources[0]
            self._plan.append((
                name,
                sources[0] if plain else None,
                None if plain else _getter(sources),
                _converter(field_spec),
                field_spec.required,
            ))
        self._checks = tuple(CHECKS[name] for name in spec.checks)
        self._keys = spec.key
        # A single plain key field is by far the most common: skip the generic key builder.
        only = spec.key[0] if len(spec.key) == 1 else None
        self._simple_key = (
            only.fields[0] if only and len(only.fields) == 1 and not only.prefix else None
        )
        self._key_names = ", ".join(key.key_field for key in spec.key)
        self.uses_context = any(
            name in CONTEXT_TRANSFORMS for field_spec in spec.fields.values() for name in field_spec.transforms
        )

    def key_of(self, raw: dict[str, Any]) -> tuple[str, str] | None:
        """Best-effort record key straight from the raw columns, for a record that failed to map:
        quarantining it must not make the engine think the record left the source."""
        for key in self._keys:
            parts = []
            for name in key.fields:
                field_spec = self._spec.fields.get(name)
                value = _getter(field_spec.sources)(raw) if field_spec else _ABSENT
                if value is _ABSENT or _is_empty(value):
                    if name in key.optional:
                        parts.append("")
                        continue
                    break
                parts.append(str(value).strip())
            else:
                if any(parts):
                    return key.prefix + "|".join(parts), key.key_field
        return None

    def map(self, raw: dict[str, Any], ctx: MappingContext) -> MappedRecord:
        data: dict[str, Any] = {}
        name = None
        try:
            for name, column, getter, convert, required in self._plan:
                value = raw.get(column, _ABSENT) if getter is None else getter(raw)
                if value is not _ABSENT:
                    data[name] = convert(value, ctx)
                elif required:
                    raise MappingError("required column missing")
            name = None
            for check in self._checks:
                check(data)
        except MappingError as error:
            self._locate(error, name, raw)
            raise
        return self._keyed(data)

    def _keyed(self, data: dict[str, Any]) -> MappedRecord:
        if self._simple_key is not None:
            value = data.get(self._simple_key)
            if value is not None and value != "":
                return MappedRecord(str(value), data, self._simple_key)
        else:
            for key in self._keys:
                value = _key_value(data, key)
                if value is not None:
                    return MappedRecord(value, data, key.key_field)
        raise MappingError(f"no record key ({self._key_names})", field=self._keys[0].fields[0])

    def _locate(self, error: MappingError, name: str | None, raw: dict[str, Any]) -> None:
        """Fill in the canonical field and the source column the bad value came from."""
        if error.field is None:
            error.field = name
        spec = self._spec.fields.get(error.field or "")
        if spec is not None and error.source_field is None:
            error.source_field = next(
                (source for source in spec.sources if _single_getter(source)(raw) is not _ABSENT),
                spec.sources[0],
            )


def _stable(value: Any) -> Any:
    """JSON stand-in for what a spec holds besides plain data (sets, code tables): never a repr
    with a memory address, which would change the version in every process."""
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    plain = (str, int, float, bool, dict, list, tuple, type(None))
    return {"type": type(value).__name__,
            **{k: v for k, v in sorted(vars(value).items()) if isinstance(v, plain)}}


class SpecMapping(Mapping):
    """A mapping compiled from a declarative spec."""

    def __init__(self, spec: MappingSpec) -> None:
        self.name = spec.name
        self.spec = spec
        self._kinds = {kind: CompiledKind(kind, kind_spec) for kind, kind_spec in spec.kinds.items()}
        # Changes whenever the spec does: part of every record fingerprint, so that a changed
        # mapping re-maps records whose source data did not change.
        canonical = json.dumps(dataclasses.asdict(spec), sort_keys=True, ensure_ascii=False,
                               default=_stable)
        self.version = hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:16]

    def uses_context(self, kind: str) -> bool:
        """Whether mapping `kind` looks beyond the record (e.g. a party org resolved by name)."""
        compiled = self._kinds.get(kind)
        return bool(compiled and compiled.uses_context)

    def key_of(self, kind: str, raw: dict[str, Any]) -> tuple[str, str] | None:
        compiled = self._kinds.get(kind)
        return compiled.key_of(raw) if compiled else None

    def kinds(self) -> set[str]:
        return set(self._kinds)

    def map(self, kind: str, raw: dict[str, Any], ctx: MappingContext) -> MappedRecord:
        """Map one raw record; MappingError quarantines it.

        An unknown kind is a configuration error, not a bad record: it raises MappingSpecError so
        the engine does not quarantine a whole source row by row. Check `kinds()` up front.
        """
        try:
            compiled = self._kinds[kind]
        except KeyError:
            raise MappingSpecError(
                f"{self.spec.origin}: mapping '{self.name}' has no kind '{kind}'; "
                f"it maps {', '.join(sorted(self._kinds))}"
            ) from None
        return compiled.map(raw, ctx)

    def __repr__(self) -> str:
        return f"<SpecMapping {self.name} ({self.spec.origin}): {', '.join(self._kinds)}>"
