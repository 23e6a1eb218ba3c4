"""Spec validation and loading: every error names the spec file and the key path."""
from __future__ import annotations

from pathlib import Path

import pytest

from mappings import MappingSpecError, load_mapping
from mappings.loader import builtin_names, mapping_from_dict

GOOD = """\
name: oa
kinds:
  staff:
    key: employee_no
    fields:
      employee_no: 工号
      gender: {from: 性别, map: gender}
"""


def _write(tmp_path: Path, text: str, name: str = "oa.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str) -> str:
    _write(tmp_path, text)
    with pytest.raises(MappingSpecError) as caught:
        load_mapping("oa.yaml", base_dir=tmp_path)
    return str(caught.value)


def test_file_relative_to_base_dir(tmp_path: Path) -> None:
    _write(tmp_path, GOOD)
    mapping = load_mapping("oa.yaml", base_dir=tmp_path)
    assert mapping.name == "oa"
    assert mapping.kinds() == {"staff"}


def test_path_with_separator_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    _write(tmp_path / "specs", GOOD, "oa.yml")
    assert load_mapping("specs/oa.yml", base_dir=tmp_path).name == "oa"
    assert load_mapping(str(tmp_path / "specs" / "oa.yml")).name == "oa"


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace("map: gender", "map: sexx"),
     "oa.yaml: kinds.staff.fields.gender.map: unknown code table 'sexx'"),
    (GOOD.replace("map: gender", "transform: [strip, uper]"),
     "oa.yaml: kinds.staff.fields.gender.transform.1: unknown transform 'uper'"),
    (GOOD.replace("map: gender", "transform: dat"),
     "oa.yaml: kinds.staff.fields.gender.transform: unknown transform 'dat'"),
    (GOOD.replace("map: gender", "frm: x"), "oa.yaml: kinds.staff.fields.gender.frm: Unknown field"),
    (GOOD.replace("map: gender", "required: maybe"), "oa.yaml: kinds.staff.fields.gender.required: "),
    (GOOD.replace("  staff:", "  stuff:"), "oa.yaml: kinds.stuff: unknown kind"),
    (GOOD.replace("key: employee_no", "key: id_number"),
     "oa.yaml: kinds.staff.key.0: key field 'id_number' is not in fields"),
    (GOOD.replace("    key: employee_no\n", ""), "oa.yaml: kinds.staff.key: Missing data"),
    (GOOD.replace("name: oa\n", ""), "oa.yaml: name: Missing data"),
    (GOOD + "    checks: [id_matches]\n", "oa.yaml: kinds.staff.checks.0: unknown check 'id_matches'"),
    (GOOD.replace("map: gender", "map: {yes: '1'}"), "oa.yaml: kinds.staff.fields.gender.map: spelling True: quote it"),
    (GOOD.replace("map: gender", "map: {A: x, a: y}"), "oa.yaml: kinds.staff.fields.gender.map: 'a' means both"),
    (GOOD.replace("map: gender", "map: []"), "oa.yaml: kinds.staff.fields.gender.map: must be a code table"),
    (GOOD.replace("{from: 性别, map: gender}", "[性别]"), "oa.yaml: kinds.staff.fields.gender: must be a column"),
    (GOOD.replace("key: employee_no", "key: [{fields: [employee_no], optional: [employee_no]}]"),
     "oa.yaml: kinds.staff.key.0: needs at least one field"),
    ("name: oa\nkinds: {}\n", "oa.yaml: kinds: must be a non-empty map"),
    ("- just a list\n", "oa.yaml: must be a map"),
    ("name: oa\nkinds: [\n", "oa.yaml: invalid YAML at line"),
])
def test_errors_name_file_and_key_path(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _error(tmp_path, text)


def test_every_problem_is_reported(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("map: gender", "map: sexx, transform: nope"))
    assert "fields.gender.map: unknown code table 'sexx'" in message
    assert "fields.gender.transform: unknown transform 'nope'" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MappingSpecError, match="missing.yaml: mapping file not found"):
        load_mapping("missing.yaml", base_dir=tmp_path)


def test_unknown_builtin_lists_the_builtins() -> None:
    with pytest.raises(MappingSpecError, match="unknown mapping 'nationalroster'.*national-roster"):
        load_mapping("nationalroster")


def test_builtins_are_listed_and_cached() -> None:
    assert {"canonical", "oa-export", "national-roster"} <= set(builtin_names())
    assert load_mapping("canonical") is load_mapping("canonical")


def test_mapping_from_dict_names_its_origin() -> None:
    with pytest.raises(MappingSpecError, match="weaver preset: kinds.staff.fields: Missing data"):
        mapping_from_dict({"name": "w", "kinds": {"staff": {"key": "employee_no"}}}, "weaver preset")
