"""The package's tests: ``python3 -m unittest`` in packages/python runs them against the source in src/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
