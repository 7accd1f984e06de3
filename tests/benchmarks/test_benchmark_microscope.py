"""benchmarks/microscope.py runs in its quick form on the CPU and prints its three tables."""

import importlib.util
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "microscope.py"


def load():
    spec = importlib.util.spec_from_file_location("microscope_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["microscope_benchmark"] = module
    spec.loader.exec_module(module)
    return module


def test_the_quick_benchmark_prints_every_table(capsys):
    load().main(["--quick"])
    out = capsys.readouterr().out
    assert "| the quickstart's 16 |" in out and "ratio pass / bare" in out
    assert "### 2. Whole-model sweep of the digits ViT" in out and "| 4 |" in out
    assert "no GPU here: the GPU's figures were not measured" in out
    rows = [line for line in out.splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 2 and all(float(row.split("|")[4]) > 0 for row in rows)  # a fraction of the peak, both sweeps
