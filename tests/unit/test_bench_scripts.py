"""Every bench script starts: its imports resolve (harness first: it puts ComfyUI and the pack on the path) and its
arguments parse. `--help` exits right after the imports, so no model is built."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*_overhead.py")))
def test_bench_script_imports_and_parses(script):
    run = subprocess.run([sys.executable, str(BENCH / script), "--help"], cwd=BENCH.parent, capture_output=True,
                         text=True, timeout=240, env=dict(os.environ))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage:" in run.stdout
