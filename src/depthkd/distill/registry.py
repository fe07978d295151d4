"""Method names -> classes. Every module of this package that defines a method registers it on import.

``get_method`` imports all modules of ``depthkd.distill`` once, so a new method is available as soon
as its file exists: no list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from depthkd.errors import ConfigError

METHODS: dict[str, type] = {}

_SUPPORT_MODULES = {"base", "registry", "hooks"}
_discovered = False


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator: make the method available under ``name`` (sets ``cls.name``)."""

    def decorator(cls: type) -> type:
        existing = METHODS.get(name)
        if existing is not None and existing is not cls:
            raise ConfigError(f"method name {name!r} is taken by {existing.__module__}.{existing.__qualname__}")
        cls.name = name
        METHODS[name] = cls
        return cls

    return decorator


def _discover() -> None:
    """Import every method module of the package (once)."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module("depthkd.distill")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _SUPPORT_MODULES and not module.name.startswith("_"):
            importlib.import_module(f"depthkd.distill.{module.name}")
    _discovered = True


def method_names() -> list[str]:
    """Registered method names, sorted."""
    _discover()
    return sorted(METHODS)


def get_method(name: str) -> type:
    """The method class registered under ``name``; a ConfigError listing the names otherwise."""
    _discover()
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def build_method(name: str, options: Any = None) -> Any:
    """An instance of method ``name`` with ``options`` (its ``Config`` instance or a mapping)."""
    cls = get_method(name)
    if options is None or isinstance(options, cls.Config):
        return cls(options)
    from depthkd.config import from_dict

    return cls(from_dict(cls.Config, options, "method.options"))


__all__ = ["METHODS", "build_method", "get_method", "method_names", "register_method"]
