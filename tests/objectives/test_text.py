"""Language models: sentence reconstruction from layer outputs, decoding and the text report."""

from __future__ import annotations

import csv
import pickle

import lightning as L
import pytest
import torch
from conftest import Collector

from lightning_featvis import (
    FeatvisError,
    Octave,
    SentenceTargets,
    TextReconstructionObjective,
    TextReport,
)
from lightning_featvis.decoding import TokenDecoder
from lightning_featvis.models import MiniLM, TextModel, TinyGPT2
from lightning_featvis.probe import Probe

SENTENCES = ["The sky is blue.", "A cat sat on the mat."]


def fit_text(objective, sentences, targets, root, group_size=8, callbacks=(), **trainer_kwargs) -> Collector:
    """Fit a text objective on ``targets`` x ``sentences``; return the collected group results."""
    L.seed_everything(0, verbose=False)
    collector = Collector()
    options = dict(accelerator="cpu", devices=1, default_root_dir=root, max_epochs=1, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False, logger=False)
    trainer = L.Trainer(callbacks=[*callbacks, collector], **{**options, **trainer_kwargs})
    trainer.fit(objective, datamodule=SentenceTargets(sentences, targets, group_size=group_size))
    return collector


def read_rows(path) -> dict[str, dict]:
    with path.open() as f:
        return {row["target"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def minilm_net():
    return MiniLM().build().eval()


@pytest.mark.parametrize("method", ["pinv", "cosine"])
def test_decoding_maps_exact_embeddings_back_to_their_tokens(minilm_net, method):
    adapter = MiniLM()
    weight = adapter.embedding_matrix(minilm_net)
    decoder = TokenDecoder(weight)
    for sentence in [*SENTENCES, "Paris is the capital of France."]:
        ids = torch.tensor(adapter.encode(sentence))
        assert decoder.decode(weight[ids], method).tolist() == ids.tolist()
        top = decoder.top_k(weight[ids], 5, method)
        assert top.shape == (len(ids), 5) and top[:, 0].tolist() == ids.tolist()  # best first


def test_restricted_vocabulary_decodes_only_its_tokens(minilm_net):
    weight = MiniLM().embedding_matrix(minilm_net)
    allowed = [1996, 3712, 2003, 2630]  # the sky is blue
    decoder = TokenDecoder(weight, allowed)
    noise = torch.randn(50, weight.shape[1], generator=torch.Generator().manual_seed(0)) * weight.std()
    for method in ("pinv", "cosine"):
        assert set(decoder.decode(noise, method).tolist()) <= set(allowed)
        assert decoder.decode(weight[allowed], method).tolist() == allowed
    # the unrestricted decoder reads the same noise as tokens outside that set
    assert not set(TokenDecoder(weight).decode(noise).tolist()) <= set(allowed)


def test_block1_of_an_untrained_tiny_gpt2_gives_its_sentences_back(tmp_path):
    objective = TextReconstructionObjective(TinyGPT2(), octaves=[Octave(steps=150, lr=(2.0, 0.2))])
    fit_text(objective, SENTENCES, ["transformer.h.0:all"], tmp_path, callbacks=[TextReport()])
    rows = read_rows(tmp_path / "text" / "text.csv")
    assert len(rows) == 2
    for i, sentence in enumerate(SENTENCES):
        row = rows[f"transformer.h.0:all@{i}"]
        assert row["sentence"] == sentence
        assert float(row["token_recovery"]) == pytest.approx(1.0)  # every token back
        assert row["recovered"] == sentence.lower()  # MiniLM's uncased vocabulary
        assert row["accurate"] == "True" and row["next_token_agrees"] == "True"
        assert float(row["distance"]) < float(row["noise_distance"])


def test_the_lm_head_path_and_the_hidden_state_path_both_run_and_learn(tmp_path):
    objective = TextReconstructionObjective(TinyGPT2(), octaves=[Octave(steps=60, lr=(2.0, 0.2))])
    start = TextReconstructionObjective(TinyGPT2(), octaves=[Octave(steps=1, lr=(2.0, 2.0))])
    targets = ["transformer.h.1:all", "lm_head:all"]
    trained = fit_text(objective, SENTENCES[:1], targets, tmp_path / "a")
    first = fit_text(start, SENTENCES[:1], targets, tmp_path / "b")
    losses = {t.key: float(loss) for r in trained.results for t, loss in zip(r.targets, r.losses)}
    before = {t.key: float(loss) for r in first.results for t, loss in zip(r.targets, r.losses)}
    assert set(losses) == {"transformer.h.1:all@0", "lm_head:all@0"}
    for key in losses:
        assert losses[key] < 0.3 * before[key]
    # the head's output is the vocabulary: [1, T, V]
    net = objective.net
    acts = objective.run(objective.sentence_embeddings(0), ["lm_head"])["lm_head"]
    assert acts.shape == (1, len(objective.sentence_ids[0]), net.config.vocab_size)


@pytest.mark.parametrize("make, layer", [(lambda: TinyGPT2(n_layer=3), "transformer.h.0"),
                                         (lambda: MiniLM(), "encoder.layer.1")])
def test_early_exit_gives_the_full_forward_gradient_on_embeddings(make, layer):
    adapter = make()
    torch.manual_seed(0)
    net = adapter.build().eval().requires_grad_(False)
    e = (adapter.embedding_matrix(net)[torch.tensor([adapter.encode("The sky is blue.")])]).clone().requires_grad_()
    grads = []
    for stop in (True, False):
        out = Probe(net, [layer], stop=stop)(inputs_embeds=e)[layer]
        (grad,) = torch.autograd.grad(out.square().sum(), e)
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_sentences_padded_in_a_group_give_what_they_give_alone(tmp_path):
    """A short sentence grouped with a longer one (attention mask, BERT: masking matters) ends
    where it ends alone. (L2: L1's sign-like gradient would flip on float noise near zero.)"""
    steps = [Octave(steps=10, lr=(2.0, 0.2))]
    sentences = ["The sky is blue.", "Paris is the capital of France, and it is big."]
    together = fit_text(TextReconstructionObjective(MiniLM(num_blocks=1), distance="l2", octaves=steps), sentences,
                        ["encoder.layer.0:all"], tmp_path / "a", group_size=2)
    alone = fit_text(TextReconstructionObjective(MiniLM(num_blocks=1), distance="l2", octaves=steps), sentences[:1],
                     ["encoder.layer.0:all"], tmp_path / "b", group_size=1)
    grouped = {t.key: e for r in together.results for t, e in zip(r.targets, r.images)}
    single = alone.results[0].images[0]
    length = single.shape[0]
    assert grouped["encoder.layer.0:all@1"].shape[0] > length
    torch.testing.assert_close(grouped["encoder.layer.0:all@0"][:length], single, atol=1e-4, rtol=1e-4)


def test_truncated_models_put_the_head_on_the_last_kept_block():
    torch.manual_seed(0)
    adapter = TinyGPT2(n_layer=3, num_blocks=1)
    net = adapter.build().eval()
    assert len(net.transformer.h) == 1
    e = adapter.embedding_matrix(net)[torch.tensor([adapter.encode("The sky is blue.")])]
    acts = Probe(net, ["transformer.h.0", "lm_head"], stop=False)(inputs_embeds=e)
    torch.testing.assert_close(acts["lm_head"], net.lm_head(net.transformer.ln_f(acts["transformer.h.0"])))
    with pytest.raises(FeatvisError, match="num_blocks 4 is more than"):
        TinyGPT2(n_layer=3, num_blocks=4).build()


def test_a_mixed_start_begins_between_noise_and_the_sentence(tmp_path):
    # a learning rate too small to move anything measurably (a zero one is refused)
    objective = TextReconstructionObjective(TinyGPT2(), start="mix", mix=1.0, octaves=[Octave(steps=1, lr=(1e-12, 1e-12))])
    collected = fit_text(objective, SENTENCES[:1], ["transformer.h.0:all"], tmp_path)
    e = objective.sentence_embeddings(0)[0]
    torch.testing.assert_close(collected.results[0].images[0], e)  # still the sentence itself
    assert float(collected.results[0].losses[0]) < 1e-6


def test_cli_writes_the_table_embeddings_and_tensorboard_text(tmp_path):
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightning_featvis.cli import main

    config = yaml.safe_load(open("configs/text/tiny_gpt2.yaml"))
    config["model"]["init_args"]["octaves"] = [{"steps": 5, "lr": [2.0, 0.2]}]
    config["data"]["init_args"]["sentences"] = SENTENCES
    path = tmp_path / "text.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path), "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"])
    run = tmp_path / "lightning_logs" / "version_0"
    rows = read_rows(run / "text" / "text.csv")
    assert list(rows) == [f"{layer}:all@{i}" for layer in ("transformer.h.0", "transformer.h.1", "lm_head") for i in (0, 1)]
    assert rows["lm_head:all@1"]["file"] == "lm_head__all__sentence1.pt"
    embeddings = torch.load(run / "text" / "lm_head__all__sentence1.pt")
    assert embeddings.shape == (len(TinyGPT2().encode(SENTENCES[1])), 64)
    events = EventAccumulator(str(run), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    texts = {"tiny_gpt2/text/table/text_summary", "tiny_gpt2/text/lm_head:all@1/text_summary"}
    assert texts <= set(events.Tags()["tensors"])
    table = events.Tensors("tiny_gpt2/text/table/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert all(f"| {key} | {row['recovered']} |" in table for key, row in rows.items())
    recovery = events.Scalars("tiny_gpt2/text/token_recovery")
    assert sorted(e.step for e in recovery) == list(range(6))
    assert [e.value for e in sorted(recovery, key=lambda e: e.step)] == pytest.approx(
        [float(r["token_recovery"]) for r in rows.values()], abs=1e-4)  # float32 in TensorBoard


def test_text_bad_input_is_named(tmp_path):
    steps = [Octave(steps=1)]
    with pytest.raises(FeatvisError, match="unknown layer 'transformer.h.7'.*Closest"):
        fit_text(TextReconstructionObjective(TinyGPT2(), octaves=steps), SENTENCES, ["transformer.h.7:all"], tmp_path)
    with pytest.raises(FeatvisError, match="patch 40 is out of range.*valid patches are 0-4"):
        fit_text(TextReconstructionObjective(TinyGPT2(), octaves=steps), SENTENCES[:1], ["transformer.h.0:patch=40"], tmp_path)
    with pytest.raises(FeatvisError, match="non-empty strings"):
        fit_text(TextReconstructionObjective(TinyGPT2(), octaves=steps), ["  "], ["transformer.h.0:all"], tmp_path)
    with pytest.raises(FeatvisError, match="text octaves take no size"):
        fit_text(TextReconstructionObjective(TinyGPT2(), octaves=[Octave(steps=1, size=64)]), SENTENCES,
                 ["transformer.h.0:all"], tmp_path)
    with pytest.raises(FeatvisError, match="vocabulary"):
        objective = TextReconstructionObjective(TinyGPT2(), octaves=steps, vocabulary=["", " "])
        fit_text(objective, SENTENCES[:1], ["transformer.h.0:all"], tmp_path, callbacks=[TextReport()])
    with pytest.raises(FeatvisError, match="task must be"):
        TextModel("gpt2", task="seq2seq")
    with pytest.raises(FeatvisError, match="model 'no/such-model'.*(Offline|offline)"):
        TextModel("no/such-model").build()


def test_text_models_pickle_without_their_tokenizer():
    adapter = TinyGPT2()
    adapter.tokenizer()
    copy = pickle.loads(pickle.dumps(adapter))
    assert copy._tokenizer is None and copy.encode("The sky") == adapter.encode("The sky")


def test_a_checkpoint_inside_a_group_resumes_to_the_uninterrupted_embeddings(tmp_path):
    """2 groups of 2 targets, 6 steps each, a checkpoint every 3 steps: resuming from step 9
    (inside group 2) ends with exactly the embeddings of the run never interrupted."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def fit(root, ckpt_path=None, checkpoints=False):
        L.seed_everything(0, verbose=False)
        collector = Collector()
        callbacks = [collector]
        if checkpoints:
            callbacks.append(ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1))
        objective = TextReconstructionObjective(TinyGPT2(), octaves=[Octave(steps=6, lr=(2.0, 0.2))])
        trainer = L.Trainer(accelerator="cpu", devices=1, default_root_dir=root, max_epochs=1, logger=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                            enable_checkpointing=checkpoints)
        trainer.fit(objective, datamodule=SentenceTargets(SENTENCES, ["transformer.h.0:all", "lm_head:all"],
                                                          group_size=2), ckpt_path=ckpt_path)
        return {t.key: e for r in collector.results for t, e in zip(r.targets, r.images)}

    whole = fit(tmp_path / "whole", checkpoints=True)
    (checkpoint,) = (tmp_path / "ckpt").glob("*step=9.ckpt")
    resumed = fit(tmp_path / "resumed", ckpt_path=checkpoint)
    assert sorted(resumed) == ["lm_head:all@0", "lm_head:all@1"]  # the group under way at step 9
    for key, e in resumed.items():  # a step more or less (lr 2.0) would move them far more
        torch.testing.assert_close(e, whole[key], atol=1e-5, rtol=1e-5)


def test_star_units_take_their_sizes_from_the_model_and_the_shortest_sentence(tmp_path):
    objective = TextReconstructionObjective(TinyGPT2(n_embd=16, n_head=2), octaves=[Octave(steps=1)])
    sentences = ["The sky is blue.", "A cat sat on the mat."]  # 5 and 7 tokens
    collected = fit_text(objective, sentences, ["transformer.h.0:patch=*", "transformer.h.0.mlp.c_fc:neuron=*"],
                         tmp_path, group_size=100)
    keys = {t.key for r in collected.results for t in r.targets}
    assert {k for k in keys if ":patch" in k} == {f"transformer.h.0:patch{p}@{s}" for p in range(5) for s in (0, 1)}
    assert len([k for k in keys if ":neuron" in k]) == 64 * 2  # c_fc is 4 x 16 wide


def test_embeddings_load_into_a_module_that_never_allocated_them():
    """ddp_spawn's parent process gets the trained state back without ever running setup."""
    from lightning_featvis.params import EmbeddingSequence

    trained = EmbeddingSequence()
    trained.width = 4
    trained.allocate(2, 3)
    trained.reset_([5, 6], 3)
    fresh = EmbeddingSequence()
    fresh.load_state_dict(trained.state_dict())
    torch.testing.assert_close(fresh(), trained())


def test_featvis_layers_lists_a_text_models_blocks_and_head(capsys):
    from lightning_featvis.cli import main

    main(["layers", "--config", "configs/text/tiny_gpt2.yaml"])
    out = capsys.readouterr().out
    assert "tiny_gpt2: input embeddings [1, T, D]" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    assert lines["transformer.h.1"][1:] == ["GPT2Block", "[1,", "5,", "64]", "tokens"]
    assert lines["lm_head"][1:] == ["Linear", "[1,", "5,", "30522]", "tokens"]


def test_a_rerun_of_a_text_run_cut_short_renders_only_the_rest(tmp_path):
    """Cut after the first group (max_steps, as a cluster's time limit would), rerun the same
    command: the rerun takes the first group over, renders the rest, and ends with the table
    and embeddings of a run never cut."""
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightning_featvis.cli import main

    config = yaml.safe_load(open("configs/text/tiny_gpt2.yaml"))
    config["model"]["init_args"]["octaves"] = [{"steps": 4, "lr": [2.0, 0.2]}]
    config["data"]["init_args"].update(sentences=SENTENCES, group_size=2)  # 3 groups of 2
    path = tmp_path / "text.yaml"
    path.write_text(yaml.safe_dump(config))

    def run(root, *extra):
        main(["fit", "--config", str(path), f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
              "--trainer.enable_checkpointing=false", *extra])

    run(tmp_path / "whole")
    run(tmp_path / "cut", "--trainer.max_steps=4")
    run(tmp_path / "cut")
    whole, first, rerun = (tmp_path / "whole" / "lightning_logs" / "version_0",
                           *(tmp_path / "cut" / "lightning_logs" / f"version_{i}" for i in (0, 1)))
    assert list(read_rows(first / "text" / "text.csv")) == ["transformer.h.0:all@0", "transformer.h.0:all@1"]
    expected, got = read_rows(whole / "text" / "text.csv"), read_rows(rerun / "text" / "text.csv")
    assert list(got) == list(expected) and got == expected
    for row in expected.values():
        assert (rerun / "text" / row["file"]).read_bytes() == (whole / "text" / row["file"]).read_bytes()
    # the rerun rendered only the two groups left: 4 targets' recovery scalars, at their positions
    events = EventAccumulator(str(rerun), size_guidance={"scalars": 0})
    events.Reload()
    assert sorted(e.step for e in events.Scalars("tiny_gpt2/text/token_recovery")) == [2, 3, 4, 5]


def test_an_interrupted_text_run_says_where_its_finished_targets_are(tmp_path, capsys):
    class Interrupt(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch["group"] == 1:
                raise KeyboardInterrupt

    objective = TextReconstructionObjective(TinyGPT2(), octaves=[Octave(steps=2)])
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        fit_text(objective, SENTENCES, ["transformer.h.0:all"], tmp_path, group_size=1, callbacks=[TextReport(), Interrupt()])
    assert list(read_rows(tmp_path / "text" / "text.csv")) == ["transformer.h.0:all@0"]
    err = capsys.readouterr().err
    assert f"featvis: interrupted: 1 finished targets' rows and embeddings are in {tmp_path / 'text'}" in err
    assert "Run the same command again" in err


def test_a_direction_unit_matches_the_sentences_projection_on_it(tmp_path):
    width = TinyGPT2().build().config.n_embd
    probe = torch.randn(3, width, generator=torch.Generator().manual_seed(0))
    torch.save(probe, tmp_path / "probe.pt")
    make = lambda steps: TextReconstructionObjective(TinyGPT2(), directions={"probe": str(tmp_path / "probe.pt")},
                                                     octaves=[Octave(steps=steps, lr=(2.0, 0.2))])
    objective, start = make(80), make(1)
    targets = ["transformer.h.0:direction=probe[1]"]
    losses = {t.key: float(x) for r in fit_text(objective, SENTENCES[:1], targets, tmp_path / "a").results
              for t, x in zip(r.targets, r.losses)}
    before = {t.key: float(x) for r in fit_text(start, SENTENCES[:1], targets, tmp_path / "b").results
              for t, x in zip(r.targets, r.losses)}
    assert losses["transformer.h.0:probe1@0"] < 0.3 * before["transformer.h.0:probe1@0"]
    # the loss reads the projections, not the neurons: [1, T] of block 1's tokens on row 1
    tokens = objective.run(objective.sentence_embeddings(0), ["transformer.h.0"])["transformer.h.0"]
    (target,) = objective.plan.targets
    torch.testing.assert_close(objective.select({"transformer.h.0": tokens}, target), tokens[..., :] @ probe[1],
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(FeatvisError, match=f"width {width - 1}.*width {width}"):
        torch.save(torch.randn(2, width - 1), tmp_path / "narrow.pt")
        fit_text(TextReconstructionObjective(TinyGPT2(), directions={"probe": str(tmp_path / "narrow.pt")},
                                             octaves=[Octave(steps=1)]), SENTENCES[:1], targets, tmp_path / "c")
