"""Notebook parameters with or without Databricks: ``dbutils.widgets`` or a local stand-in.

Driver only. On Databricks a notebook reads its parameters from ``dbutils.widgets``;
anywhere else (a laptop, a test, ``python notebook.py``) :func:`widgets` returns
:class:`LocalWidgets`, which answers ``get`` with the ``HERMES_<NAME>`` environment
variable when set and the widget's declared default otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from hermes_spark.errors import InvalidInputError


class LocalWidgets:
    """The subset of ``dbutils.widgets`` the notebooks use: text, dropdown, get."""

    def __init__(self) -> None:
        self._defaults: dict[str, str] = {}

    def text(self, name: str, default: str, label: str | None = None) -> None:
        """Declare a text parameter."""
        self._defaults[name] = default

    def dropdown(
        self, name: str, default: str, choices: Sequence[str], label: str | None = None
    ) -> None:
        """Declare a parameter with fixed choices (checked on ``get``)."""
        self._defaults[name] = default
        self._choices = {**getattr(self, "_choices", {}), name: tuple(choices)}

    def get(self, name: str) -> str:
        """``HERMES_<NAME>`` from the environment, else the declared default."""
        if name not in self._defaults:
            raise KeyError(f"widget {name!r} was not declared")
        value = os.environ.get(f"HERMES_{name.upper()}", self._defaults[name])
        choices = getattr(self, "_choices", {}).get(name)
        if choices and value not in choices:
            raise InvalidInputError(f"widget {name}={value!r} is not one of {', '.join(choices)}")
        return value


def widgets(namespace: dict[str, Any]) -> Any:
    """``dbutils.widgets`` when the notebook runs on Databricks, else :class:`LocalWidgets`.

    ``namespace`` is the notebook's ``globals()`` (where Databricks puts ``dbutils``).
    """
    dbutils = namespace.get("dbutils")
    return dbutils.widgets if dbutils is not None else LocalWidgets()


def display_fn(namespace: dict[str, Any]) -> Any:
    """Databricks' ``display`` when present, else a ``DataFrame.show`` of 20 rows."""
    found = namespace.get("display")
    if found is not None:
        return found

    def show(df: Any) -> None:
        if hasattr(df, "show"):
            df.show(20, truncate=False)
        else:
            print(df)

    return show


def display_html_fn(namespace: dict[str, Any]) -> Any:
    """Show an HTML page or an object with ``_repr_html_`` inline: Databricks'
    ``displayHTML`` when present, else ``IPython.display`` (Jupyter), else the object
    itself is returned for the caller to save."""
    found = namespace.get("displayHTML")

    def show(obj: Any) -> Any:
        html = obj if isinstance(obj, str) else obj._repr_html_()
        if found is not None:
            return found(html)
        try:
            from IPython.display import HTML, display
        except ImportError:  # plain python: nothing to draw on
            return obj
        display(HTML(html))
        return obj

    return show
