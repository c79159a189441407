"""The dashboard's page registry: ``register_page(name, builder)`` plugs a page in without touching others.

A builder takes the ``Dashboard`` (its store, shared selection and ``open_run``/``show`` navigation) and
returns a Panel viewable. Pages are built lazily, the first time they are shown.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
PAGE_MODULES: list[str] = ["kdlab.ui.dashboard", "kdlab.ui.representations", "kdlab.ui.shift",
                           "kdlab.ui.frequency", "kdlab.ui.distilled_images", "kdlab.ui.language_models",
                           "kdlab.ui.diffusion", "kdlab.ui.sweeps"]


def register_page(name: str, builder: Callable[[Any], Any] | None = None, *, order: int = 100,
                  doc: str = "", replace: bool = False) -> Any:
    """Register a dashboard page (also usable as a decorator: ``@register_page("CKA")``)."""

    def wrap(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if name in PAGES and not replace:
            raise ConfigError(f"page {name!r} is registered twice (pass replace=True to override)")
        PAGES[name] = Page(name, fn, order, doc or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return wrap(builder) if builder is not None else wrap


def register_component_page(name: str, component: Callable[[Any], Any], key: str, *, order: int,
                            doc: str) -> None:
    """Register a page made of one component: ``component(store=dash.store)``, kept as ``dash.components[key]`` (so a
    test or notebook drives the same object a user clicks) and shown as its ``panel()``."""

    def build(dash: Any) -> Any:
        comp = dash.components[key] = component(store=dash.store)
        return comp.panel()

    register_page(name, build, order=order, doc=doc, replace=True)


def unregister_page(name: str) -> None:
    PAGES.pop(name, None)


def pages() -> list[Page]:
    """Registered pages in display order (importing ``PAGE_MODULES`` first)."""
    for module in PAGE_MODULES:
        importlib.import_module(module)
    return sorted(PAGES.values(), key=lambda p: (p.order, p.name))


class FinishedRunChoice:
    """Mixin of the analysis pages: their ``picker`` offers the store's completed runs of ``run_kind`` (the
    first one chosen when none is), and ``folder()`` is the chosen run's folder. Needs ``store``, ``picker`` and
    ``run_id``."""

    store: Any
    picker: Any
    run_id: str | None
    run_kind = "train"

    def refresh_options(self) -> None:
        df = self.store.list_runs()
        done = df[(df["status"] == "completed") & (df["kind"] == self.run_kind)] if len(df) else df
        self.picker.options = {f"{r['name']} · {r['id']}": r["id"] for _, r in done.iterrows()}
        if self.run_id is None and self.picker.options:
            self.picker.value = next(iter(self.picker.options.values()))

    def folder(self) -> Path | None:
        if not self.run_id:
            return None
        rec = self.store.get_run(self.run_id)
        return Path(rec.run_dir) if rec.run_dir else self.store.run_dir(self.run_id)
