"""The benchmarks run (in their quick form) and print the table the README quotes."""

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_overhead_quick_prints_all_rows(capsys):
    rows = load("step_overhead").main(["--quick", "--steps", "2", "--rounds", "1"])
    assert len(rows) == 3 and all(row["a_ms"] > 0 and row["b_ms"] > 0 for row in rows)
    out = capsys.readouterr().out
    assert "| overhead, 1 target" in out and "| early exit" in out


def test_patch_locality_quick_measures_every_model(capsys):
    rows = load("patch_locality").main(["--quick", "--images", "4"])
    assert {r["model"] for r in rows} == {"ViT", "mixer", "GPT-2 stack"}
    # shares are fractions; a single-patch unit of the first block weighs its own patch above uniform
    assert all(0.0 <= r["gradient"] <= 1.0 and 0.0 <= r["change"] <= 1.0 for r in rows)
    assert all(r["gradient"] > 1 / 64 for r in rows if r["block"] == 1)
    assert "| ViT | 1 |" in capsys.readouterr().out
