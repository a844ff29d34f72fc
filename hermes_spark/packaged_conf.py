"""Find a config by name (``web-scale``, ``cluster-gpu``, ``demo``) or by path.

Driver only. A name resolves to ``hermes_spark/conf/NAME.yaml`` inside the installed
package (wheel, ``--py-files`` zip; see setup.py), or, in a source checkout or editable
install, to the checkout's top-level ``conf/NAME.yaml``. Anything that looks like a path
(has a separator or a ``.yaml``/``.yml`` suffix, or exists) is used as given.
"""

from __future__ import annotations

import logging
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from hermes_spark.errors import InvalidConfigError

log = logging.getLogger(__name__)

#: Old names still accepted: ``default`` was the web-scale config, never the built-in
#: defaults a run without ``--config`` uses, so it has a name that says what it is.
ALIASES = {"default": "web-scale"}

#: The checkout's top-level conf/ (source tree and editable installs).
_CHECKOUT_CONF = Path(__file__).resolve().parent.parent / "conf"


def _packaged(name: str) -> Traversable | None:
    try:
        candidate = resources.files("hermes_spark").joinpath("conf", f"{name}.yaml")
    except (ModuleNotFoundError, NotADirectoryError):  # pragma: no cover - odd importers
        candidate = None
    if candidate is not None and candidate.is_file():
        return candidate
    local = _CHECKOUT_CONF / f"{name}.yaml"
    return local if local.is_file() else None


def available_configs() -> list[str]:
    """Names ``--config`` accepts without a path (packaged or in the checkout)."""
    names: set[str] = set()
    try:
        conf = resources.files("hermes_spark").joinpath("conf")
        if conf.is_dir():
            names.update(
                p.name[: -len(".yaml")] for p in conf.iterdir() if p.name.endswith(".yaml")
            )
    except (ModuleNotFoundError, NotADirectoryError):  # pragma: no cover
        pass
    if _CHECKOUT_CONF.is_dir():
        names.update(p.stem for p in _CHECKOUT_CONF.glob("*.yaml"))
    return sorted(names)


def is_config_name(value: str) -> bool:
    """True when ``value`` is a bare name like ``default`` rather than a path."""
    return (
        "/" not in value
        and "\\" not in value
        and not value.endswith((".yaml", ".yml"))
        and not Path(value).exists()
    )


def resolve_config(value: str | Path) -> Path | Traversable:
    """The config file ``value`` names: a packaged config by name, else the path itself.

    Raises :class:`InvalidConfigError` for an unknown name, listing the known ones.
    """
    if isinstance(value, Path) or not is_config_name(value):
        return Path(value)
    if value in ALIASES:
        log.warning("--config %s is now called %s", value, ALIASES[value])
        value = ALIASES[value]
    found = _packaged(value)
    if found is None:
        raise InvalidConfigError(
            f"{value!r} is neither a file nor a packaged config; packaged configs "
            f"are {', '.join(available_configs()) or 'none'} (or give a path to a YAML file)",
            param="config",
        )
    return found
