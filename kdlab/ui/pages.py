"""The dashboard's page registry: ``register_page(name, builder)`` plugs a page in without touching others.

A builder takes the ``Dashboard`` (its store, shared selection and ``open_run``/``show`` navigation) and
returns a Panel viewable. Pages are built lazily, the first time they are shown.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kdlab.errors import ConfigError


@dataclass(frozen=True)
class Page:
    name: str
    builder: Callable[[Any], Any]
    order: int = 100
    doc: str = ""


PAGES: dict[str, Page] = {}

# Modules whose import registers a page; the dashboard imports them when it is built. An analysis issue
# adds its own module here (one line) and touches nothing else.
PAGE_MODULES: list[str] = ["kdlab.ui.dashboard", "kdlab.ui.representations", "kdlab.ui.source_selection",
                           "kdlab.ui.frequency", "kdlab.ui.distilled_images"]


def register_page(name: str, builder: Callable[[Any], Any] | None = None, *, order: int = 100,
                  doc: str = "", replace: bool = False) -> Any:
    """Register a dashboard page (also usable as a decorator: ``@register_page("CKA")``)."""

    def wrap(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if name in PAGES and not replace:
            raise ConfigError(f"page {name!r} is registered twice (pass replace=True to override)")
        PAGES[name] = Page(name, fn, order, doc or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return wrap(builder) if builder is not None else wrap


def unregister_page(name: str) -> None:
    PAGES.pop(name, None)


def pages() -> list[Page]:
    """Registered pages in display order (importing ``PAGE_MODULES`` first)."""
    for module in PAGE_MODULES:
        importlib.import_module(module)
    return sorted(PAGES.values(), key=lambda p: (p.order, p.name))
