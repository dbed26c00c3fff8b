"""Running a judge's training recipe (``scripts/train_*.py``) as a user would, for the reproduction tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run_recipe(script: str, data: Path, output: Path) -> Path:
    """Run ``scripts/<script>`` on ``data`` in a fresh interpreter; return the weights file it wrote."""
    subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--data", str(data), "--output", str(output)],
        check=True,
        capture_output=True,
    )
    return output
