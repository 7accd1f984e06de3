"""benchmarks/scale.py runs in its quick form and tabulates every section."""

import pytest
from conftest import load_benchmark


def load_scale():
    return load_benchmark("scale")  # spawned processes unpickle its callbacks by this name


def test_scale_quick_tabulates_every_section(tmp_path, capsys):
    scale = load_scale()
    out_file = tmp_path / "scale.md"
    rows = scale.main(["--quick", "--out", str(out_file)])
    by = {s: [r for r in rows if r["section"] == s] for s in scale.SECTIONS}

    groups = by["groups"]
    assert [r["group"] for r in groups] == list(scale.QUICK.groups)
    assert all(r["targets_per_min"] > 0 and r["loop_s"] > 0 for r in groups)
    assert groups[0]["ratio"] == pytest.approx(1.0)

    (devices,) = by["devices"]
    assert devices["group"] == 1 and devices["devices"] == 2
    assert devices["one_targets_per_min"] > 0 and devices["many_targets_per_min"] > 0
    assert devices["ratio"] == pytest.approx(devices["many_targets_per_min"] / devices["one_targets_per_min"])

    depth = by["depth"]
    assert [r["block"] for r in depth] == sorted(scale.QUICK.blocks)  # ordered by block
    assert all(r["early_ms"] > 0 and r["full_ms"] > 0 for r in depth)

    memory = by["memory"]
    assert [(r["position"], r["group"]) for r in memory] == [("early", 2), ("late", 2)]
    assert all(r["kind"] == "CPU peak RSS" and r["base_mib"] > 0 and r["growth_mib"] >= 0 for r in memory)

    out = capsys.readouterr().out
    for heading in ("| group size | loop s |", "| 1 | 4 |", "| block 4 |", "| tiny ViT 32 px | block 1 (early) | 2 |"):
        assert heading in out
    assert out_file.read_text().split("\n\n")[0] in out


def test_scale_rejects_unknown_sections(capsys):
    import pytest

    with pytest.raises(SystemExit):
        load_scale().main(["--sections", "groups,nope"])
    assert "unknown nope" in capsys.readouterr().err
