"""Mappings turn raw source records into canonical records.

Declarative specs (YAML) say which canonical field comes from which source path, through which
transforms and code tables. Mappings know nothing of HTTP or the database: what they need from
stored state (e.g. a party org's code by its name) comes in through `MappingContext`.
"""
from mappings.base import MappedRecord, Mapping, MappingContext, MappingError, MappingSpecError
from mappings.loader import load_mapping

__all__ = [
    "MappedRecord",
    "Mapping",
    "MappingContext",
    "MappingError",
    "MappingSpecError",
    "load_mapping",
]
