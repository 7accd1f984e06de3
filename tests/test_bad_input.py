"""Bad input ends with a FeatvisError (one ``featvis: error: ...`` line, exit status 2), never
with another exception or a traceback.

A property-based test throws random unit specifications and canvas sizes at a one-step render
of the embedded digits ViT; explicit tests drive the ``featvis`` command with each kind of bad
input the troubleshooting page (docs/troubleshooting.md) names.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import render
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from lightning_featvis import NeuronObjective
from lightning_featvis.cli import main
from lightning_featvis.errors import FeatvisError
from lightning_featvis.schedule import Octave
from lightning_featvis.targets import parse_targets
from lightning_featvis.zoo.digits import DigitsViT

ROOT = Path(__file__).resolve().parents[1]
DIGITS_CNN = ROOT / "lightning_featvis" / "zoo" / "digits" / "checkpoints" / "digits_cnn.pt"
LAYER = "encoder.layers.encoder_layer_1"  # [1, 65, 64]: 64 patches + class token, 64 neurons

# --- property: random units and canvas sizes --------------------------------------------------

VALID_LAYERS = [LAYER, "heads.head", "conv_proj", "encoder.layers.encoder_layer_0.mlp.0", "encoder.layers.encoder_layer_3", ""]
INVALID_LAYERS = ["encoder.layers.encoder_layer_9", "nope", "encoder.layer.1", "heads.head.", "a:b", " "]
KEYS = ["neuron", "neurons", "patch", "patches", "class", "cls", "garbage", "", "Neuron"]

_index = st.integers(0, 80).map(str)
_range = st.tuples(st.integers(0, 80), st.integers(-3, 3)).map(lambda t: f"{t[0]}-{t[0] + t[1]}")  # reversed too
_odd = st.sampled_from(["-1", "-0", "99999999999999999999", "007", "+3", "1e3", "0x10", "٣", " 5", "5-", "-",
                        "99999999999999999998-99999999999999999999", "1-2-3", "[", "]", "[]", "[,]", "[ ]", "[*]"])
_bracket = st.lists(st.one_of(_index, _range, _odd), max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
_good_bracket = st.lists(st.one_of(_index, _range), min_size=1, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
GOOD_VALUES = st.one_of(_index, _range, _good_bracket, st.just("*"))
VALUES = st.one_of(_index, _range, _odd, _bracket, st.sampled_from(["*", "cls", "", "true", "yes", "0", "1"]), st.text(max_size=6))
TOKENS = st.one_of(
    # mostly well-formed units (so that many examples get as far as rendering), then anything
    st.tuples(st.sampled_from(["neuron", "patch", "class"]), GOOD_VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.sampled_from(["cls=1", "cls=0", "patch=cls", "all"]),
    st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.sampled_from(["=", "cls", "neuron", "*", "all all"]),
    st.text(max_size=5),
)
UNITS = st.lists(TOKENS, max_size=2).map(" ".join)
SPECS = st.tuples(st.one_of(st.none(), st.sampled_from(VALID_LAYERS), st.sampled_from(VALID_LAYERS + INVALID_LAYERS)), UNITS).map(
    lambda lu: lu[1] if lu[0] is None else f"{lu[0]}:{lu[1]}"
)


def _expanded_count(specs: list[str]) -> int:
    """How many targets the specs expand into (sizes of the largest digits ViT layer), to keep
    sweeps such as ``neuron=* patch=*`` (4096 targets, ~10 s) out of the property's time budget."""
    try:
        return len(parse_targets(specs, lambda layer: {"neurons": 256, "patches": 64}, LAYER))
    except Exception:  # noqa: BLE001 - the real run below must say what is wrong
        return 0


def render_once(specs: list[str], size: int) -> tuple[bool, object]:
    """One step of a fresh digits ViT (nothing cached between calls) on ``specs`` at canvas
    ``size``: ``(True, collector)`` or ``(False, FeatvisError)``; any other exception escapes."""
    with tempfile.TemporaryDirectory() as root:
        objective = NeuronObjective(DigitsViT(), layer=LAYER, octaves=[Octave(steps=1, size=size)])
        try:
            return True, render(objective, specs, root, group_size=64)
        except FeatvisError as err:
            return False, err


@settings(max_examples=600, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(specs=st.lists(SPECS, max_size=2), size=st.one_of(st.integers(32, 80), st.integers(8, 80)))
def test_random_units_and_sizes_render_or_say_what_is_wrong(specs, size):
    assume(_expanded_count(specs) <= 300)
    ok, result = render_once(specs, size)
    event("rendered" if ok else "FeatvisError")
    if size < 32:
        assert not ok, f"canvas {size} px is smaller than the 32 px input, yet {specs} rendered"
    if ok:
        images = result.images()
        assert images and all(img.shape[-2:] == (size, size) for img in images.values())
    else:
        assert str(result)  # a message, not an empty error


def test_canvas_smaller_than_the_model_is_a_featvis_error():
    ok, err = render_once(["neuron=0"], 31)
    assert not ok and "octave canvas size 31 is smaller than the digits_vit input size 32" in str(err)


def test_huge_range_is_a_featvis_error_not_a_memory_error():
    ok, err = render_once(["neuron=0-999999999999999"], 32)
    assert not ok and "has 1000000000000000 values" in str(err) and "neuron=* is every neuron" in str(err)


def test_an_empty_set_is_a_featvis_error():
    ok, err = render_once(["neuron=[]"], 32)
    assert not ok and "empty set neuron='[]'" in str(err)


def test_star_on_the_network_output_counts_its_classes():
    ok, result = render_once([":class=*"], 32)
    assert ok, result
    assert len(result.images()) == 10


# --- the featvis command: one clear message per kind of bad input -------------------------------

DIGITS = ["fit", "--model=lightning_featvis.NeuronObjective", "--model.network=lightning_featvis.zoo.digits.DigitsViT",
          f"--model.layer={LAYER}", "--data=lightning_featvis.TargetDataModule", "--data.targets=[neuron=0]",
          "--model.octaves=[{steps: 1}]", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
DREAM = ["fit", "--model=lightning_featvis.DeepDreamObjective", "--model.network=lightning_featvis.zoo.digits.DigitsViT",
         f"--model.layer={LAYER}", "--data=lightning_featvis.TargetDataModule", "--data.targets=[neuron=0]",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def bad_command(args: list[str], tmp_path: Path, capsys) -> tuple[str, str]:
    """Run ``featvis`` expecting bad input: exit status 2, exactly one ``featvis: error:`` line,
    no traceback. Returns that line and the whole stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main([*args, f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("featvis: error: ")]
    assert len(errors) == 1, err
    return errors[0], err


def featvis_lines(err: str) -> list[str]:
    """Every line the command itself printed (``featvis: ...``)."""
    return [line for line in err.splitlines() if line.startswith("featvis:")]


def test_unknown_torchvision_weights_lists_the_choices(tmp_path, capsys):
    line, _ = bad_command(["fit", "--model=lightning_featvis.NeuronObjective",
                           "--model.network=lightning_featvis.models.TorchvisionViT",
                           "--model.network.init_args.weights=NOPE", "--data=lightning_featvis.TargetDataModule"],
                          tmp_path, capsys)
    assert "unknown weights 'NOPE' for vit_b_32; choose one of IMAGENET1K_V1" in line


def test_unknown_timm_model_is_one_message(tmp_path, capsys):
    line, _ = bad_command(["fit", "--model=lightning_featvis.NeuronObjective",
                           "--model.network=lightning_featvis.models.TimmModel",
                           "--model.network.init_args.name=nope_model_xyz", "--model.network.init_args.pretrained=false",
                           "--data=lightning_featvis.TargetDataModule"], tmp_path, capsys)
    assert "unknown timm model 'nope_model_xyz'" in line


def test_missing_deep_dream_photo_is_one_message(tmp_path, capsys):
    line, _ = bad_command([*DREAM, "--model.octaves=[{steps: 1}]", f"--model.photo={tmp_path / 'missing.jpg'}"],
                          tmp_path, capsys)
    assert f"image file not found: {tmp_path / 'missing.jpg'}" in line and "china.jpg" in line


def test_unreadable_deep_dream_photo_is_one_message(tmp_path, capsys):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image")
    line, _ = bad_command([*DREAM, "--model.octaves=[{steps: 1}]", f"--model.photo={garbage}"], tmp_path, capsys)
    assert f"cannot read image {garbage}" in line


def test_missing_photo_image_path_is_one_message(tmp_path, capsys):
    line, _ = bad_command([*DIGITS, "--model.param=lightning_featvis.PhotoImage",
                           f"--model.param.path={tmp_path / 'missing.jpg'}"], tmp_path, capsys)
    assert f"image file not found: {tmp_path / 'missing.jpg'}" in line


def test_checkpoint_of_another_model_names_the_mismatch(tmp_path, capsys):
    line, _ = bad_command([*DIGITS, f"--model.network.checkpoint={DIGITS_CNN}"], tmp_path, capsys)
    assert "does not match the model VisionTransformer" in line and "Missing key(s)" in line


def test_missing_checkpoint_file_is_one_message(tmp_path, capsys):
    line, _ = bad_command([*DIGITS, f"--model.network.checkpoint={tmp_path / 'missing.pt'}"], tmp_path, capsys)
    assert f"checkpoint file not found: {tmp_path / 'missing.pt'}" in line


def test_garbage_checkpoint_file_is_refused(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    line, _ = bad_command([*DIGITS, f"--model.network.checkpoint={garbage}"], tmp_path, capsys)
    assert f"cannot read checkpoint {garbage}" in line


def test_garbage_checkpoint_message_is_one_line_without_torch_advice(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    _, err = bad_command([*DIGITS, f"--model.network.checkpoint={garbage}"], tmp_path, capsys)
    assert len(err.split(f"cannot read checkpoint {garbage}")[1].strip().splitlines()) == 1
    assert "weights_only" not in err and "file an issue" not in err


def test_octave_the_downsampled_canvas_cannot_store_is_one_message(tmp_path, capsys):
    line, _ = bad_command([*DIGITS, "--model.param=lightning_featvis.GrayscaleImage", "--model.param.downsample=4",
                           "--model.octaves=[{steps: 1, size: 34}]"], tmp_path, capsys)
    assert line.startswith("featvis: error: canvas side 34 is not a multiple of downsample=4")


def test_octave_smaller_than_the_model_input_is_one_message(tmp_path, capsys):
    line, _ = bad_command([*DIGITS, "--model.octaves=[{steps: 1, size: 24}]"], tmp_path, capsys)
    assert line == "featvis: error: octave canvas size 24 is smaller than the digits_vit input size 32"


# errors raised in the objective's setup: only the error's own line (the interrupt report of
# ImageWriter.on_exception, "Run the same command again...", would be wrong advice here)
SETUP_ERRORS = {
    "octave_too_small": [*DIGITS, "--model.octaves=[{steps: 1, size: 24}]"],
    "checkpoint_of_another_model": [*DIGITS, f"--model.network.checkpoint={DIGITS_CNN}"],
    "unknown_layer": [*DIGITS, "--model.layer=encoder.layers.encoder_layer_9"],
    "dream_photo_missing_default_octaves": [*DREAM, "--model.photo=/nonexistent/missing.jpg"],
}


@pytest.mark.parametrize("case", list(SETUP_ERRORS))
def test_setup_error_prints_only_the_error_line(case, tmp_path, capsys):
    _, err = bad_command(SETUP_ERRORS[case], tmp_path, capsys)
    assert len(featvis_lines(err)) == 1, featvis_lines(err)


def test_unknown_config_key_is_the_parsers_one_error(tmp_path, capsys):
    """jsonargparse reports this itself (usage, then one ``error:`` with details), exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        main([*DIGITS, "--model.init_args.nonsense=3", f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(re.findall(r"(?m)^(?:\S.*: )?error: ", err)) == 1
    assert "Option 'nonsense' is not accepted" in err


def test_string_for_an_int_is_the_parsers_one_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*DIGITS, "--data.init_args.group_size=abc", f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(re.findall(r"(?m)^(?:\S.*: )?error: ", err)) == 1
    assert 'Parser key "group_size"' in err and "Got value: abc" in err


def test_bad_parameterization_files_and_values_are_named(tmp_path):
    from lightning_featvis.params import MacoImage, PixelImage
    from lightning_featvis.params.maco import load_magnitude

    with pytest.raises(FeatvisError, match="MACO magnitude '.*nothing.pt' is neither a file saved with torch.save nor an image source"):
        load_magnitude(str(tmp_path / "nothing.pt"), 32)
    (tmp_path / "garbage.pt").write_bytes(b"not a tensor")
    with pytest.raises(FeatvisError, match="cannot read MACO magnitude"):
        load_magnitude(str(tmp_path / "garbage.pt"), 32)
    torch.save(torch.ones(2, 32, 17), tmp_path / "two.pt")
    with pytest.raises(FeatvisError, match=r"expected a \[C, H, W // 2 \+ 1\] magnitude tensor .*got \(2, 32, 17\)"):
        load_magnitude(str(tmp_path / "two.pt"), 32)
    torch.save(torch.ones(1, 16, 9), tmp_path / "ok.pt")
    assert load_magnitude(str(tmp_path / "ok.pt"), 32).shape == (3, 32, 17)  # resampled, expanded
    assert isinstance(MacoImage(magnitude=str(tmp_path / "ok.pt")), MacoImage)
    with pytest.raises(FeatvisError, match="init must be 'normal' or 'uniform'"):
        PixelImage(init="zeros")
