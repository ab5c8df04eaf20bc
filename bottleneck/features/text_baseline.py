"""The text baseline: TF-IDF features of the same texts, cached like any other baseline.

The texts of a text cache's rows are read again from its source (reopened from the
provenance, as every baseline's is); a ``TfidfVectorizer`` (:data:`TFIDF_SETTINGS`) learns
its vocabulary and IDF weights from the **train** cache's texts only and transforms the train
and test texts; each becomes a cache with the same ids and labels, keyed by its fingerprint
in the store. A head on it (logistic regression by default, ``--baseline-heads``) is the
classic bag-of-words baseline a frozen text base has to beat, and it goes beside the heads
in ``compare`` and in learning curves. Within cross-validation on the train cache the
vocabulary and IDF have seen every fold's texts, never their labels.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.cache.format import FORMAT_VERSION
from bottleneck_transfer.features.cache.partial import discard_partial, partial_path, writer_lock
from bottleneck_transfer.features.cache.reader import FeatureCache, check_existing
from bottleneck_transfer.features.cache.writer import CacheWriter
from bottleneck_transfer.features.sources import Source, reopen_source
from bottleneck_transfer.features.store import CacheStore
from bottleneck_transfer.features.text_batches import read_text
from bottleneck_transfer.fingerprint import fingerprint
from bottleneck_transfer.versions import software_versions

TFIDF = "tfidf"
#: The vectorizer's settings (part of the baseline cache's identity).
TFIDF_SETTINGS = {
    "max_features": 4096,
    "ngram_range": [1, 2],
    "sublinear_tf": True,
    "lowercase": True,
    "dtype": "float32",
}


def _cache_texts(path: Path) -> tuple[list[str], np.ndarray, list[str], list[str], Source, str]:
    """A text cache's rows' texts (from its reopened source), labels, ids and class names,
    the source, and the cache's fingerprint."""
    with FeatureCache.open(path) as cache:
        described = cache.provenance
        ids, labels = list(cache.ids), np.asarray(cache.labels)
        names, print_ = list(cache.class_names), cache.fingerprint
    if (described.get("base") or {}).get("input") != "text":
        raise BaseModelError(
            f"the {TFIDF} baseline takes the texts of a text cache; {path} holds image features: "
            "use random-base or raw-pixels"
        )
    source = reopen_source(described["source"])
    by_id = {item.id: item for item in source.items}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise BaseModelError(
            f"{path}'s source no longer holds row {missing[0]!r} ({len(missing)} rows missing): "
            "re-extract the cache from its source"
        )
    texts = [read_text(source, by_id[i]) for i in ids]
    return texts, labels, ids, names, source, print_


def tfidf_caches(
    train: str | Path, test: str | Path | None, store: CacheStore
) -> tuple[Path, Path | None]:
    """The TF-IDF caches of ``train`` (and ``test``) in ``store`` (reused when up to date)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    settings = {**TFIDF_SETTINGS, "ngram_range": tuple(TFIDF_SETTINGS["ngram_range"])}
    settings["dtype"] = np.float32
    parts = {"train": Path(train), **({"test": Path(test)} if test is not None else {})}
    read = {name: _cache_texts(path) for name, path in parts.items()}
    vectorizer = TfidfVectorizer(**settings).fit(read["train"][0])
    base = {"baseline": TFIDF, **TFIDF_SETTINGS, "fitted_on": read["train"][5]}
    out: dict[str, Path] = {}
    for name, (texts, labels, ids, names, source, _) in read.items():
        identity = {
            "format_version": FORMAT_VERSION,
            "base": base,
            "source": source.identity(),
            "rows": fingerprint(ids),
        }
        path = store.path_for(fingerprint(identity))
        if not check_existing(path, fingerprint(identity), identity):
            features = vectorizer.transform(texts).toarray().astype(np.float32)
            _write(path, identity, source, features, labels, ids, names)
        store.touch(path)
        out[name] = path
    return out["train"], out.get("test")


def _write(
    path: Path,
    identity: dict,
    source: Source,
    features: np.ndarray,
    labels: np.ndarray,
    ids: list[str],
    names: list[str],
) -> None:
    """Write one TF-IDF cache (by one atomic rename)."""
    provenance = {
        "base": identity["base"],
        "source": source.describe(),
        "software": software_versions(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(path):
        writer = CacheWriter.create(
            partial_path(path),
            dim=features.shape[1],
            fingerprint=fingerprint(identity),
            identity=identity,
            provenance=provenance,
            class_names=names,
        )
        try:
            writer.write_batch(features, labels.astype(np.int32), ids, [], items_done=len(ids))
            writer.commit()
            writer.finalize(path, {"rows": len(ids), "baseline": TFIDF})
        except BaseException:
            writer.close()
            discard_partial(partial_path(path))
            raise
