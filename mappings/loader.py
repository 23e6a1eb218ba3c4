"""Find, parse, validate and compile mapping specs.

`load_mapping(name_or_path, base_dir=None)`: a bare name (``canonical``, ``oa-export``,
``national-roster``) is a builtin spec from mappings/builtin/; anything ending ``.yaml``/``.yml``
or containing a path separator is a file, relative to `base_dir` (the config file's folder)
unless absolute. Every problem — missing file, bad YAML, invalid spec — is a MappingSpecError
naming the file.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mappings.base import MappingSpecError
from mappings.compiler import SpecMapping
from mappings.spec import parse_spec

BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_names() -> list[str]:
    """The names of the builtin mappings."""
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml"))


def _is_path(name_or_path: str) -> bool:
    return name_or_path.endswith((".yaml", ".yml")) or any(
        sep in name_or_path for sep in (os.sep, "/", os.altsep or "/")
    )


def mapping_from_dict(data: Any, origin: str = "<spec>") -> SpecMapping:
    """Validate and compile an already parsed spec (e.g. a vendor preset's dict)."""
    return SpecMapping(parse_spec(data, origin))


def _load_file(path: Path, origin: str) -> SpecMapping:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingSpecError(f"{origin}: mapping file not found ({path})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MappingSpecError(f"{origin}: cannot read mapping file: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise MappingSpecError(f"{origin}: invalid YAML{line}: {problem}") from None
    return mapping_from_dict(data, origin)


@lru_cache(maxsize=None)
def _builtin(name: str) -> SpecMapping:
    # Builtins never change while running and compiling one is the costly part: share them.
    return _load_file(BUILTIN_DIR / f"{name}.yaml", f"{name}.yaml")


def load_mapping(name_or_path: str, base_dir: str | Path | None = None) -> SpecMapping:
    """The mapping named by a source's `mapping:` value (builtin name or spec file path)."""
    if _is_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        return _load_file(path, name_or_path)
    if name_or_path not in builtin_names():
        raise MappingSpecError(
            f"unknown mapping '{name_or_path}'; builtin: {', '.join(builtin_names())} "
            "(a spec file must end in .yaml or .yml)"
        )
    return _builtin(name_or_path)
