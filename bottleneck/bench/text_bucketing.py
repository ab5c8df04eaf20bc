"""Text length bucketing vs fixed-length batches: texts per second and the padding share.

A small BERT-like KerasHub preset (random weights; written to a temporary folder with
``save_to_preset``) reads a corpus whose lengths follow a Pareto tail (most texts short, a
few near ``--max-length``). Both modes run the extraction's own path
(:func:`~bottleneck_transfer.features.text_batches.iter_text_batches` then the text runner,
tokenization included) over the same texts under the same token budget (``--batch-size``
texts of ``--max-length`` tokens a call): fixed-length batches pad every text to
``--max-length``; bucketing groups texts of similar length. Each mode runs once to compile,
then ``--repeats`` times interleaved with the other; the best time counts. The features of
the two modes are compared (``max|a-b|/max|b|``).

    nice -n 10 python -m bottleneck_transfer.bench.text_bucketing --texts 2000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The corpus' vocabulary (besides BERT's special tokens).
WORDS = [f"w{k}" for k in range(500)]


def long_tailed_texts(n: int, max_words: int, seed: int = 0, tail: float = 1.2) -> list[str]:
    """``n`` texts of random words, lengths ``4 + 6 * Pareto(tail)`` words (at most
    ``max_words``): the long tail of real corpora (reviews, posts, glosses)."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(4 + 6 * rng.pareto(tail, n), max_words).astype(int)
    return [" ".join(rng.choice(WORDS, size=k)) for k in lengths]


def save_text_base(folder: Path, *, layers: int, hidden: int, max_length: int) -> Path:
    """A BERT-like preset with random weights and a word-level vocabulary of :data:`WORDS`."""
    import keras
    import keras_hub

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    keras.utils.set_random_seed(0)
    keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=layers, num_heads=max(1, hidden // 64),
        hidden_dim=hidden, intermediate_dim=4 * hidden, max_sequence_length=max_length,
    ).save_to_preset(str(folder))  # fmt: skip
    keras_hub.models.BertTokenizer(vocabulary=vocabulary).save_to_preset(str(folder))
    return folder


def _pass(source: Any, base: Any, runner: Any, batch_size: int, bucketing: bool) -> dict:
    """One pass over the texts: seconds, padding share and the features (source order)."""
    from bottleneck_transfer.features.text_batches import iter_text_batches

    started = time.perf_counter()
    rows, tokens, computed = [], 0, 0
    for batch in iter_text_batches(source, base.encoder, batch_size, bucketing=bucketing):
        rows.append(runner(batch.pixels))
        tokens += batch.pixels.tokens
        computed += batch.pixels.computed
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "padding": 1 - tokens / computed, "features": np.concatenate(rows)}


def bench(texts: int, max_length: int, batch_size: int, layers: int, hidden: int, repeats: int):
    """Both modes' texts/s and padding share, their ratio and the features' difference."""
    from bottleneck_transfer.features.bases import load_base
    from bottleneck_transfer.features.runners.text import TextRunner
    from bottleneck_transfer.features.sources import open_texts

    corpus = long_tailed_texts(texts, max_words=max_length)
    source = open_texts(corpus)
    with tempfile.TemporaryDirectory() as folder:
        preset = save_text_base(Path(folder) / "bert", layers=layers, hidden=hidden,
                                max_length=max_length)  # fmt: skip
        base = load_base(preset, pooling="mean", max_length=max_length)
    runner = TextRunner(base.model)
    best: dict[bool, dict] = {}
    for k in range(repeats + 1):  # the first round compiles
        for bucketing in (False, True):
            run = _pass(source, base, runner, batch_size, bucketing)
            if k and (bucketing not in best or run["seconds"] < best[bucketing]["seconds"]):
                best[bucketing] = run
    fixed, bucketed = best[False], best[True]
    difference = np.abs(bucketed["features"] - fixed["features"]).max()
    lengths = [len(t.split()) + 2 for t in corpus]
    return {
        "texts": texts,
        "max_length": max_length,
        "token_budget": batch_size * max_length,
        "base": f"BERT-like, {layers} layers, hidden {hidden}, random weights",
        "tokens_per_text": {"median": int(np.median(lengths)),
                            "p99": int(np.percentile(lengths, 99))},
        "fixed": {"texts_per_s": round(texts / fixed["seconds"], 1),
                  "padding_share": round(fixed["padding"], 3)},
        "bucketed": {"texts_per_s": round(texts / bucketed["seconds"], 1),
                     "padding_share": round(bucketed["padding"], 3)},
        "speedup": round(fixed["seconds"] / bucketed["seconds"], 2),
        "features_relative_difference": float(difference / np.abs(fixed["features"]).max()),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    result = bench(
        args.texts, args.max_length, args.batch_size, args.layers, args.hidden, args.repeats
    )
    result["load_average_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result), flush=True)
    print(
        f"fixed {result['fixed']['texts_per_s']} texts/s (padding "
        f"{result['fixed']['padding_share']:.0%}); bucketed {result['bucketed']['texts_per_s']} "
        f"texts/s (padding {result['bucketed']['padding_share']:.0%}): {result['speedup']}x",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
