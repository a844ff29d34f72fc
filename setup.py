"""Build step: ship the ``conf/`` files a run needs as package data ``hermes_spark/conf/``.

Everything else is declared in pyproject.toml. ``conf/`` stays the one copy in git (jobs,
docs and ``--config conf/web-scale.yaml`` use it); wheels and the ``--py-files`` zip carry the
configs, the jars lock (``hermes-spark setup-jars``) and the quiet log4j2 configuration
inside the package, so they resolve on a cluster or a pip install without the checkout.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"
#: conf/ files packaged besides the configs (``*.yaml``).
PACKAGED = ("jars.lock", "log4j2-quiet.properties")


class BuildPyWithConf(build_py):
    """``build_py`` that also copies ``conf/*.yaml`` and :data:`PACKAGED` into the package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "hermes_spark" / "conf"
        target.mkdir(parents=True, exist_ok=True)
        for source in [*sorted(CONF.glob("*.yaml")), *(CONF / name for name in PACKAGED)]:
            self.copy_file(str(source), str(target / source.name))


setup(cmdclass={"build_py": BuildPyWithConf})
