"""Build step: ship the top-level ``conf/*.yaml`` as package data ``hermes_spark/conf/``.

Everything else is declared in pyproject.toml. ``conf/`` stays the one copy in git (jobs,
docs and ``--config conf/default.yaml`` use it); wheels and the ``--py-files`` zip carry it
inside the package so ``--config default`` resolves on a cluster without the checkout.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildPyWithConf(build_py):
    """``build_py`` that also copies ``conf/*.yaml`` into ``hermes_spark/conf/``."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "hermes_spark" / "conf"
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted(CONF.glob("*.yaml")):
            self.copy_file(str(source), str(target / source.name))


setup(cmdclass={"build_py": BuildPyWithConf})
