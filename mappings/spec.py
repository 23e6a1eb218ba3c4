"""The mapping spec: its YAML shape, validated with marshmallow into plain dataclasses.

Shape (all keys except `name` and `kinds` optional)::

    name: national-roster                  # the mapping's name
    description: 全国党员信息系统花名册导出   # free text
    kinds:                                 # canonical kinds this mapping maps (DESIGN.md)
      party_members:
        key: [id_number, employee_no]      # record key alternatives, first non-empty wins
        fields:                            # canonical field → where and how
          name: 姓名                        # shorthand for {from: 姓名}
          gender: {from: 性别, map: gender}
          id_number: {from: [公民身份号码, 身份证号], transform: id_number}
          party_org_code: {from: 所在党支部, transform: party_org_by_name}
          status: {from: 党籍状态, map: member_status, default: active}
        checks: [id_number_matches_birth_date_and_gender]

Field keys:
  from       column name, or a list of alternatives (the first present and non-empty wins; when
             only empty ones are present the value is empty), or a dotted path into nested
             JSON (``dept.id``; ``items.0.id`` indexes a list). A column whose own name contains
             dots is matched as written first. Defaults to the canonical field name.
  transform  a transform name or a list of them, applied in order (mappings.transforms).
  map        a code table name (mappings.codes.TABLES) or an inline ``{spelling: value}`` dict;
             applied after the transforms (element-wise to lists). Unknown spellings are a
             quarantine reason. Quote YAML booleans used as spellings ("yes", "no").
  default    the canonical value used when the column is present but empty (never when the
             column is missing: a source never blanks a field it does not provide).
  required   the column must be present and non-empty (default false).

Key alternatives: a field name (``id_number``); fields joined by ``+`` (``employee_no+period``:
all must be non-empty, the key is their values joined by ``|``, e.g. ``E001|2024``); or a
weak key ``{fields: [name, birth_date], prefix: "name:", key_field: name, optional:
[birth_date]}`` whose `optional` fields may be empty (the key is then ``name:张三|``).
`key_field` defaults to the alternative's text (``id_number``, ``employee_no+period``).

Errors raise `MappingSpecError` with one line per problem: ``<file>: <key path>: <message>``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validates_schema

from connectors.base import KINDS
from mappings.base import MappingSpecError
from mappings.codes import TABLES, CodeTable
from mappings.transforms import CHECKS, CONTEXT_TRANSFORMS, TRANSFORMS


@dataclass(frozen=True)
class FieldSpec:
    sources: tuple[str, ...]
    transforms: tuple[str, ...] = ()
    table: CodeTable | None = None
    default: Any = None
    required: bool = False


@dataclass(frozen=True)
class KeySpec:
    fields: tuple[str, ...]
    key_field: str
    prefix: str = ""
    optional: frozenset[str] = frozenset()


@dataclass(frozen=True)
class KindSpec:
    key: tuple[KeySpec, ...]
    fields: dict[str, FieldSpec]
    checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class MappingSpec:
    name: str
    kinds: dict[str, KindSpec]
    description: str = ""
    origin: str = field(default="<spec>", compare=False)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


class _OneOrMany(fields.Field):
    """A non-empty string or a non-empty list of them, loaded as a tuple; `choices` limits them."""

    def __init__(self, choices: dict[str, Any] | None = None, what: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.choices = choices
        self.what = what

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple:
        items = value if _is_list(value) else [value]
        if not items:
            raise ValidationError("must not be empty")
        errors: dict[int, list[str]] = {}
        for index, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                errors[index] = ["must be a non-empty string"]
            elif self.choices is not None and item not in self.choices:
                errors[index] = [f"unknown {self.what} '{item}'; known: {', '.join(sorted(self.choices))}"]
        if errors:
            # A single value reports its error at the key itself, not at index 0.
            raise ValidationError(errors if _is_list(value) else errors[0])
        return tuple(item.strip() for item in items)


class _CodeMap(fields.Field):
    """A code table name or an inline ``{spelling: canonical}`` dict, loaded as a CodeTable."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> CodeTable:
        if isinstance(value, str):
            if value not in TABLES:
                raise ValidationError(f"unknown code table '{value}'; known: {', '.join(sorted(TABLES))}")
            return TABLES[value]
        if not isinstance(value, dict) or not value:
            raise ValidationError("must be a code table name or a non-empty {spelling: value} map")
        for spelling, canonical in value.items():
            if isinstance(spelling, bool) or spelling is None:
                raise ValidationError(f"spelling {spelling!r}: quote it (YAML reads it as {spelling!r})")
            if not isinstance(spelling, (str, int, float)) or isinstance(canonical, (dict, list)):
                raise ValidationError(f"spelling {spelling!r}: spellings and values must be scalars")
        try:
            return CodeTable(attr or "inline", value)
        except ValueError as error:
            raise ValidationError(str(error)) from None


class _FieldSchema(Schema):
    from_ = _OneOrMany(data_key="from")
    transform = _OneOrMany(choices={**TRANSFORMS, **CONTEXT_TRANSFORMS}, what="transform")
    map = _CodeMap()
    default = fields.Raw(allow_none=True)
    required = fields.Boolean()


class _FieldSpecField(fields.Field):
    """A field spec dict, or the shorthand string naming its column."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> FieldSpec:
        if isinstance(value, str) and value.strip():
            value = {"from": value}
        elif value is None:
            value = {}
        elif not isinstance(value, dict):
            raise ValidationError("must be a column name or a field spec map")
        loaded = _FieldSchema().load(value)
        return FieldSpec(
            sources=loaded.get("from_", (attr,)),
            transforms=loaded.get("transform", ()),
            table=loaded.get("map"),
            default=loaded.get("default"),
            required=loaded.get("required", False),
        )


class _Named(fields.Field):
    """A ``{name: value}`` map whose values load through `inner`; errors keyed by name."""

    def __init__(self, inner: fields.Field, names: tuple[str, ...] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.inner = inner
        self.names = names

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict:
        if not isinstance(value, dict) or not value:
            raise ValidationError("must be a non-empty map")
        result: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for name, item in value.items():
            if self.names is not None and name not in self.names:
                errors[str(name)] = [f"unknown kind; known: {', '.join(self.names)}"]
                continue
            try:
                result[str(name)] = self.inner.deserialize(item, str(name), value)
            except ValidationError as error:
                errors[str(name)] = error.messages
        if errors:
            raise ValidationError(errors)
        return result


class _KeyAlternativeSchema(Schema):
    fields_ = fields.List(fields.String(), data_key="fields", required=True)
    prefix = fields.String()
    key_field = fields.String()
    optional = fields.List(fields.String())


class _KeyField(fields.Field):
    """Key alternatives: ``a``, ``a+b`` or a weak-key map, one or a list."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple:
        items = value if _is_list(value) else [value]
        if not items:
            raise ValidationError("must not be empty")
        keys, errors = [], {}
        for index, item in enumerate(items):
            try:
                keys.append(self._alternative(item))
            except ValidationError as error:
                errors[index] = error.messages
        if errors:
            raise ValidationError(errors if _is_list(value) else errors[0])
        return tuple(keys)

    @staticmethod
    def _alternative(item: Any) -> KeySpec:
        if isinstance(item, str) and item.strip():
            parts = tuple(part.strip() for part in item.split("+"))
            return KeySpec(fields=parts, key_field=item.strip())
        if not isinstance(item, dict):
            raise ValidationError("must be a field name, fields joined by '+', or a weak-key map")
        loaded = _KeyAlternativeSchema().load(item)
        parts = tuple(loaded["fields_"])
        optional = frozenset(loaded.get("optional", ()))
        if not parts or optional >= set(parts):
            raise ValidationError("needs at least one field that is not optional")
        return KeySpec(
            fields=parts,
            key_field=loaded.get("key_field", "+".join(parts)),
            prefix=loaded.get("prefix", ""),
            optional=optional,
        )


class _KindSchema(Schema):
    key = _KeyField(required=True)
    fields_ = _Named(_FieldSpecField(), data_key="fields", required=True)
    checks = _OneOrMany(choices=CHECKS, what="check")

    @validates_schema
    def _key_fields_are_mapped(self, data: dict[str, Any], **kwargs: Any) -> None:
        mapped = data.get("fields_", {})
        for index, key in enumerate(data.get("key", ())):
            missing = [name for name in key.fields if name not in mapped]
            if missing:
                raise ValidationError(
                    {index: [f"key field '{missing[0]}' is not in fields"]}, field_name="key"
                )

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> KindSpec:
        return KindSpec(key=data["key"], fields=data["fields_"], checks=data.get("checks", ()))


class _MappingSchema(Schema):
    name = fields.String(required=True)
    description = fields.String()
    kinds = _Named(fields.Nested(_KindSchema), names=KINDS, required=True)


def _flatten(messages: Any, path: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested error dict as (key path, message) pairs."""
    if isinstance(messages, dict):
        pairs = []
        for key, inner in messages.items():
            step = path if key == "_schema" else f"{path}.{key}" if path else str(key)
            pairs.extend(_flatten(inner, step))
        return pairs
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [(path, message) for message in messages]
    if isinstance(messages, list):
        return [pair for inner in messages for pair in _flatten(inner, path)]
    return [(path, str(messages))]


def parse_spec(data: Any, origin: str = "<spec>") -> MappingSpec:
    """Validate a spec (the parsed YAML) into a MappingSpec; MappingSpecError naming each problem."""
    if not isinstance(data, dict):
        raise MappingSpecError(f"{origin}: must be a map with 'name' and 'kinds'")
    try:
        loaded = _MappingSchema().load(data)
    except ValidationError as error:
        problems = _flatten(error.messages)
        exc = MappingSpecError("\n".join(f"{origin}: {path}: {message}" for path, message in problems))
        exc.problems = problems  # type: ignore[attr-defined]
        raise exc from None
    return MappingSpec(
        name=loaded["name"], kinds=loaded["kinds"], description=loaded.get("description", ""),
        origin=origin,
    )
