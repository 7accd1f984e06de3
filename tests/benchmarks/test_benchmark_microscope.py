"""benchmarks/microscope.py runs in its quick form on the CPU and prints its three tables."""

from conftest import load_benchmark


def load():
    return load_benchmark("microscope", "microscope_benchmark")


def test_the_quick_benchmark_prints_every_table(capsys):
    load().main(["--quick"])
    out = capsys.readouterr().out
    assert "| the quickstart's 16 |" in out and "ratio pass / bare" in out
    assert "### 2. Whole-model sweep of the digits ViT" in out and "| 4 |" in out
    assert "no GPU here: the GPU's figures were not measured" in out
    rows = [line for line in out.splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 2 and all(float(row.split("|")[4]) > 0 for row in rows)  # a fraction of the peak, both sweeps
