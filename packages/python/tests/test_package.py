"""The package installs with pip from its pyproject.toml and imports from where pip put it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from .local_broker import IN_CI

PACKAGE = Path(__file__).resolve().parents[1]


def can_build_offline():
    """pip, and a setuptools that builds wheels: 70.1 and later by itself, older ones with the wheel package."""
    probe = (
        "import setuptools, pip\n"
        "try:\n    import wheel\n"
        "except ImportError:\n"
        "    assert tuple(int(p) for p in setuptools.__version__.split('.')[:2]) >= (70, 1)\n"
    )
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


@unittest.skipIf(not can_build_offline() and not IN_CI, "no pip with a setuptools that builds wheels offline")
class Package(unittest.TestCase):
    def test_pip_installs_it_and_it_imports_from_there(self):
        with tempfile.TemporaryDirectory() as work:
            # A copy, so that the build's own files (build/, *.egg-info) land outside the repository.
            source = os.path.join(work, "source")
            shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            target = os.path.join(work, "installed")
            # Offline: the build backend is the installed setuptools, and botocore is already there.
            installed = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps",
                 "--disable-pip-version-check", "--no-cache-dir", "--target", target, source],
                capture_output=True,
                text=True,
                cwd=tempfile.gettempdir(),
            )
            self.assertEqual(installed.returncode, 0, installed.stdout + installed.stderr)
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            env["PYTHONPATH"] = target
            shown = subprocess.run(
                [sys.executable, "-c",
                 "import token_broker, token_broker.helix; print(token_broker.__file__); print(token_broker.__version__)"],
                check=True,
                capture_output=True,
                text=True,
                env=env,
                cwd=tempfile.gettempdir(),
            ).stdout.split()
            self.assertTrue(shown[0].startswith(target), shown[0])
            self.assertEqual(shown[1], "0.1.0")
            self.assertTrue((Path(target) / "token_broker" / "py.typed").exists())


if __name__ == "__main__":
    unittest.main()
