"""The intent classifier's own TF-IDF and logistic regression (agent/textmodel.py) are scikit-learn's
model without scikit-learn at start-up: if they drifted apart, the shipped intents would be judged
by a different model than the one measured in bench/intent_cv.py and the README."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from agent.classifier import MAX_ITER, TOL, default_specs, prepare, trained
from agent.replies import _specs as reply_specs
from agent.textmodel import Tfidf, char_wb_grams, fit_logistic, word_grams


def _texts(specs) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for s in specs:
        for e in s.examples:
            texts.append(prepare(e))
            labels.append(s.name)
    return texts, labels


def test_the_features_are_scikit_learns_exactly() -> None:
    texts, _ = _texts(default_specs())
    texts += ["  two  spaces", "a", "", "ß straße ÉCOLE", "x\ty"]
    for mine, theirs in (
        (Tfidf(char_wb_grams), TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
        (
            Tfidf(word_grams),
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"),
        ),
    ):
        a, b = mine.fit_transform(texts), theirs.fit_transform(texts)
        assert mine.vocabulary == theirs.vocabulary_
        np.testing.assert_allclose(mine.idf, theirs.idf_)
        assert abs(a - b).max() < 1e-12
        for t in texts[:50]:
            assert mine.analyzer(t) == theirs.build_analyzer()(t)


def _proba(x, coef, intercept) -> np.ndarray:
    z = x @ coef.T + intercept
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def test_the_fit_reaches_scikit_learns_optimum_on_the_reply_intents() -> None:
    """The reply classifier's examples (four classes, a few hundred examples), both fitted to a
    tight tolerance: the same objective has one optimum, so the probabilities agree."""
    texts, labels = _texts(reply_specs())
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels])
    x = sparse.hstack([Tfidf(char_wb_grams).fit_transform(texts), Tfidf(word_grams).fit_transform(texts)], format="csr")
    coef, intercept = fit_logistic(x, None, y, len(classes), c=10.0, tol=1e-7, max_iter=5000)
    theirs = LogisticRegression(C=10.0, tol=1e-9, max_iter=5000, class_weight="balanced").fit(x, labels)
    assert list(theirs.classes_) == classes
    assert np.abs(_proba(x, coef, intercept) - theirs.predict_proba(x)).max() < 1e-4


@pytest.mark.parametrize("n_classes", [2, 3])
def test_dense_features_and_two_classes_fit_like_scikit_learn(n_classes: int) -> None:
    """A sparse block next to a dense one (the sentence vectors), unbalanced classes, and the
    binary case, where scikit-learn fits a single weight vector."""
    rng = np.random.default_rng(0)
    x = sparse.random(200, 300, density=0.05, random_state=1, format="csr")
    dense = rng.normal(size=(200, 6))
    y = np.minimum(rng.integers(0, n_classes + 2, 200), n_classes - 1)
    coef, intercept = fit_logistic(x, dense, y, n_classes, c=5.0, tol=1e-8, max_iter=5000)
    both = sparse.hstack([x, sparse.csr_matrix(dense)], format="csr")
    theirs = LogisticRegression(C=5.0, tol=1e-10, max_iter=5000, class_weight="balanced").fit(both, y)
    assert np.abs(_proba(both, coef, intercept) - theirs.predict_proba(both)).max() < 1e-4


def test_the_shipped_classifier_is_the_one_scikit_learn_fits() -> None:
    """Not just the same optimum: the same fit, stopped where scikit-learn stops (the tolerance
    leaves sentences up to 0.05 from the optimum, so a different path would judge differently)."""
    from threadpoolctl import threadpool_limits

    clf = trained(list(default_specs()))
    texts, labels = _texts(default_specs())
    vectorizers = [
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"),
    ]
    blocks = [v.fit_transform(texts) for v in vectorizers] + [sparse.csr_matrix(clf._embed(texts))]
    x = sparse.hstack(blocks, format="csr")
    model = LogisticRegression(C=30.0, max_iter=MAX_ITER, tol=TOL, class_weight="balanced")
    with threadpool_limits(1):
        model.fit(x, labels)
    assert list(model.classes_) == clf.labels
    raw = [e for s in default_specs() for e in s.examples][::7]
    raw += ["Could you cancel FP-200004?", "ok thanks!", "wo ist mein Paket", "I don't want to cancel"]
    ours = np.array([clf.proba(t) for t in raw])
    sentences = [prepare(t) for t in raw]
    theirs = model.predict_proba(
        sparse.hstack([v.transform(sentences) for v in vectorizers] + [sparse.csr_matrix(clf._embed(sentences))], format="csr")
    )
    assert np.abs(ours - theirs).max() < 1e-6
