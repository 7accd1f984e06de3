"""benchmarks/vs_lucent.py runs in its quick form: always the featvis side, Lucent's when installed."""

import pytest
from conftest import load_benchmark

QUICK = ["--quick", "--steps", "2", "--targets", "4", "--rounds", "1"]


@pytest.fixture(scope="module")
def vs_lucent():
    return load_benchmark("vs_lucent")


def test_featvis_side_runs_without_lucent(vs_lucent, capsys):
    rows = vs_lucent.main([*QUICK, "--no-lucent"])
    # the batched-Lucent rows would repeat the featvis side, so only 1 and 4 targets per setting
    assert [(r["setting"], r["targets"]) for r in rows] == [
        ("plain", 1),
        ("plain", 4),
        ("lucent-style", 1),
        ("lucent-style", 4),
    ]
    assert all(r["featvis"]["s"] > 0 and r["featvis"]["n"] == 1 for r in rows)
    assert all(r["lucent"] is None and r["ratio"] is None for r in rows)
    out = capsys.readouterr().out
    assert "| plain | 4 | not installed | n/a |" in out and "| lucent-style | 1 |" in out


def test_both_sides_with_lucent(vs_lucent, capsys):
    # import_lucent puts the benchmark-only folder on sys.path when it exists
    if vs_lucent.import_lucent(vs_lucent.DEFAULT_LUCENT_SITE) is None:
        pytest.importorskip("lucent.optvis.render", reason="Lucent not installed (see benchmarks/vs_lucent.py)")
    rows = vs_lucent.main([*QUICK, "--settings", "plain"])
    assert [(r["targets"], r["lucent_mode"]) for r in rows] == [(1, "1 call"), (4, "4 calls"), (4, "1 call, batch=4")]
    assert all(r["lucent"]["s"] > 0 and r["featvis"]["s"] > 0 and r["ratio"] > 0 for r in rows)
    assert "| plain | 4 | 1 call, batch=4 |" in capsys.readouterr().out
