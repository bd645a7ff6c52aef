"""Choosing the intent classifier by measurement: 5-fold cross-validation over the shipped examples
(agent/intent_data), for several models and decision thresholds, plus training time.

    .venv/bin/python bench/intent_cv.py              # the candidate models
    .venv/bin/python bench/intent_cv.py --per-class  # the shipped model, class by class

For each model: accuracy (the example's intent, or none, is what is found), precision and recall
of the request intents (not none), the training time on all examples, and CPU per sentence.
`--per-class`: the shipped classifier (agent/classifier.py, each intent at its own threshold),
precision and recall per intent and what each intent's missed examples were taken for."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.classifier import NONE, IntentClassifier, IntentSpec, default_specs, prepare  # noqa: E402


def models() -> dict[str, Any]:
    from scipy import sparse
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.svm import LinearSVC

    from agent.classifier import sentence_vectors

    class Vectors(BaseEstimator, TransformerMixin):
        """WordLlama sentence vectors as features, as agent/classifier.py uses them."""

        def fit(self, x: Any, y: Any = None) -> Vectors:
            return self

        def transform(self, x: Any) -> Any:
            e = np.asarray(sentence_vectors().embed([t.replace("not_", "") for t in x]))
            return sparse.csr_matrix(e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-9))

    def feats(chars: tuple[int, int] = (2, 5), words: bool = True, vectors: bool = False) -> Any:
        parts: list[Any] = [
            ("c", TfidfVectorizer(analyzer="char_wb", ngram_range=chars, sublinear_tf=True))
        ]
        if vectors:
            parts.append(("v", Vectors()))
        if words:
            parts.append(
                (
                    "w",
                    TfidfVectorizer(
                        ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"
                    ),
                )
            )
        return FeatureUnion(parts)

    return {
        "lr C=30 char2-5+words+wordllama": lambda: make_pipeline(
            feats(vectors=True),
            LogisticRegression(C=30, max_iter=200, tol=1e-3, class_weight="balanced"),
        ),
        "lr C=10 char2-5+words+wordllama": lambda: make_pipeline(
            feats(vectors=True),
            LogisticRegression(C=10, max_iter=200, tol=1e-3, class_weight="balanced"),
        ),
        "lr C=30 char2-5+words": lambda: make_pipeline(
            feats(), LogisticRegression(C=30, max_iter=300, class_weight="balanced")
        ),
        "svc-calibrated char2-5+words": lambda: make_pipeline(
            feats(),
            CalibratedClassifierCV(LinearSVC(C=0.5, class_weight="balanced"), cv=3),
        ),
        "svc-calibrated char2-5+words+wordllama": lambda: make_pipeline(
            feats(vectors=True),
            CalibratedClassifierCV(LinearSVC(C=0.5, class_weight="balanced"), cv=3),
        ),
        "sgd-modhuber char2-5+words": lambda: make_pipeline(
            feats(),
            SGDClassifier(loss="modified_huber", alpha=1e-4, class_weight="balanced", random_state=0),
        ),
    }


def score(probs: np.ndarray, labels: list[str], y: np.ndarray, threshold: float) -> tuple[float, float, float]:
    ok = tp = fp = fn = 0
    for row, truth in zip(probs, y, strict=True):
        found = {labels[i] for i in range(len(labels)) if labels[i] != NONE and row[i] >= threshold}
        ok += found == ({truth} - {NONE})
        want = {truth} - {NONE}
        tp += len(found & want)
        fp += len(found - want)
        fn += len(want - found)
    return ok / len(y), tp / max(1, tp + fp), tp / max(1, tp + fn)


def per_class() -> None:
    """5-fold cross-validation of the shipped classifier as the agent runs it."""
    from sklearn.model_selection import StratifiedKFold

    specs = default_specs()
    x = np.array([e for s in specs for e in s.examples], dtype=object)
    y = np.array([s.name for s in specs for _ in s.examples])
    found: list[str] = [NONE] * len(x)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        fold = [
            IntentSpec(s.name, s.description, tuple(x[train][y[train] == s.name]), s.threshold)
            for s in specs
        ]
        clf = IntentClassifier(fold)
        for i in test:
            over = clf.classify(str(x[i]))
            names = [n for sent in over for n in sent.intents]
            found[i] = names[0] if names else NONE
    pairs = Counter(zip(y, found, strict=True))
    labels = sorted(set(y))
    print(f"{len(x)} examples, 5-fold, each intent at its own threshold")
    print(f"{'intent':16} {'n':>4} {'precision':>9} {'recall':>6}  missed examples taken for")
    for name in labels:
        tp = pairs[(name, name)]
        n = sum(pairs[(name, o)] for o in labels)
        fp = sum(pairs[(o, name)] for o in labels if o != name)
        missed = ", ".join(f"{o} {pairs[(name, o)]}" for o in labels if o != name and pairs[(name, o)])
        print(f"{name:16} {n:4} {tp / max(1, tp + fp):9.2f} {tp / max(1, n):6.2f}  {missed}")
    print(f"accuracy {sum(pairs[(n, n)] for n in labels) / len(x):.3f}")


def main() -> None:
    from sklearn.model_selection import StratifiedKFold

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", action="store_true", help="the shipped model, class by class")
    if p.parse_args().per_class:
        per_class()
        return
    specs = default_specs()
    x = np.array([prepare(e) for s in specs for e in s.examples], dtype=object)
    y = np.array([s.name for s in specs for _ in s.examples])
    print(f"{len(x)} examples, {len(specs)} intents")
    print(f"{'model':32} {'train s':>7} {'ms/sent':>7}  threshold: accuracy / precision / recall")
    for name, make in models().items():
        probs = np.zeros((len(x), len(set(y))))
        labels: list[str] = []
        for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
            m = make().fit(x[train], y[train])
            labels = [str(c) for c in m.classes_]
            probs[test] = m.predict_proba(x[test])
        t = time.perf_counter()
        m = make().fit(x, y)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        for s in x[:200]:
            m.predict_proba([s])
        ms = (time.perf_counter() - t) / 200 * 1000
        cells = []
        for th in (0.3, 0.4, 0.5, 0.6):
            a, p, r = score(probs, labels, y, th)
            cells.append(f"{th}: {a:.2f}/{p:.2f}/{r:.2f}")
        print(f"{name:32} {train_s:7.2f} {ms:7.2f}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
