"""Ships the repository's params.yaml inside the package as vsslpipe/defaults.yaml.

Every command reads its defaults from that file when run outside the repository (no
params.yaml in the folder): one file, params.yaml, stays the only place the values are written.
A source checkout (``pip install -e .``) reads params.yaml itself (vsslpipe/config.py).
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithDefaults(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "vsslpipe" / "defaults.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / "params.yaml", target)


setup(cmdclass={"build_py": BuildPyWithDefaults})
