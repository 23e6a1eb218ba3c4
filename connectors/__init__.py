"""Connectors fetch pages of raw records from source systems.

They know nothing of the database or of the canonical model: a connector turns a source's
API, file or view into a stream of `Page`s of plain dicts, and reports failures as `SourceError`.
"""
from connectors.base import KINDS, Connector, Page, SourceError
from connectors.registry import available, get_connector_class, register

__all__ = ["KINDS", "Connector", "Page", "SourceError", "available", "get_connector_class", "register"]
