"""The connector registry: connector type name → class.

Builtin connectors register themselves on import; third-party packages add theirs through the
`dualline.connectors` entry point group (each entry point names a Connector subclass).
"""
from __future__ import annotations

import pkgutil
from importlib import import_module
from importlib.metadata import entry_points

from connectors.base import Connector

_REGISTRY: dict[str, type[Connector]] = {}
# Modules of this package that are infrastructure, not connectors.
_NOT_CONNECTORS = {"connectors.base", "connectors.registry", "connectors.http"}
_loaded = False


def register(cls: type[Connector]) -> type[Connector]:
    """Class decorator: make a connector available under its `type_name`."""
    if not cls.type_name:
        raise ValueError(f"{cls.__name__} has no type_name")
    _REGISTRY[cls.type_name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import connectors

    # Every other module of the package (and of connectors.vendors) registers its connectors.
    for info in pkgutil.walk_packages(connectors.__path__, prefix="connectors."):
        if info.name not in _NOT_CONNECTORS:
            import_module(info.name)
    for ep in entry_points(group="dualline.connectors"):
        cls = ep.load()
        if isinstance(cls, type) and issubclass(cls, Connector):
            _REGISTRY.setdefault(cls.type_name or ep.name, cls)


def available() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get_connector_class(type_name: str) -> type[Connector]:
    """The connector class for `type_name`; KeyError naming the available ones otherwise."""
    _load()
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise KeyError(
            f"unknown connector {type_name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None
