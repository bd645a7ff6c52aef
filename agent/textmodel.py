"""The intent classifier's model, trained without importing scikit-learn at start-up: TF-IDF over
n-grams and a multinomial logistic regression, the features and the fit of scikit-learn's
`TfidfVectorizer(sublinear_tf=True)` and `LogisticRegression(class_weight="balanced")`.

Why not scikit-learn itself: at start-up it cost more than the model. Importing it (scipy.stats
among others) took 0.65 s of CPU, and its fit about 1 s, most of it scipy's L-BFGS-B keeping its
books over the 260,000 weights. Here the loss and its gradient are a sparse and a dense product,
and the same L-BFGS-B with scikit-learn's settings runs over a third of the weights (identical
feature columns fitted as one, which leaves the solver's path unchanged), so the fitted model is
scikit-learn's: tests/test_textmodel.py checks the features are identical and the shipped
classifier's probabilities equal scikit-learn's fit. bench/intent_cv.py still compares
scikit-learn's alternatives."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import sparse

# At import, not inside the fit: SciPy's own BLAS is loaded with scipy.optimize, and the fit's
# one-thread limit (threadpoolctl) only reaches the libraries already loaded when it is set.
from scipy.optimize import minimize

_WHITE_SPACES = re.compile(r"\s\s+")
_WORD = re.compile(r"(?u)\b\w+\b")


def char_wb_grams(text: str, lo: int = 2, hi: int = 5) -> list[str]:
    """Character n-grams inside word bounds, each word padded with a space: scikit-learn's
    `char_wb` analyzer (lower-cased, n-grams of a word shorter than n counted once)."""
    out: list[str] = []
    for w in padded_words(text):
        out += word_char_grams(w, lo, hi)
    return out


def padded_words(text: str) -> list[str]:
    """The words `char_wb_grams` takes its n-grams from, lower-cased and padded with a space:
    the n-grams of a text are those of its words in turn, so a caller may look them up per word."""
    return [f" {w} " for w in _WHITE_SPACES.sub(" ", text.lower()).split()]


def word_char_grams(w: str, lo: int = 2, hi: int = 5) -> list[str]:
    """The `char_wb` n-grams of one padded word (from `padded_words`), in `char_wb_grams`' order."""
    out: list[str] = []
    size = len(w)
    for n in range(lo, hi + 1):
        if size <= n:
            out.append(w)
            break
        out += [w[i : i + n] for i in range(size - n + 1)]
    return out


def word_grams(text: str) -> list[str]:
    """Words and word pairs: scikit-learn's `word` analyzer, ngram_range (1, 2), a word being any
    run of word characters (one letter too, so "i" and "0" count)."""
    tokens = _WORD.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]


class Tfidf:
    """Sublinear TF-IDF (1 + log tf, smoothed idf, rows l2-normalised) over one analyzer, the
    vocabulary every n-gram of the training texts in sorted order: `TfidfVectorizer`'s defaults."""

    def __init__(self, analyzer: Callable[[str], list[str]]) -> None:
        self.analyzer = analyzer
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0)

    def fit_transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        docs: list[dict[str, int]] = []
        for t in texts:
            counts: dict[str, int] = {}
            for g in self.analyzer(t):
                counts[g] = counts.get(g, 0) + 1
            docs.append(counts)
        self.vocabulary = {g: i for i, g in enumerate(sorted({g for d in docs for g in d}))}
        vocab = self.vocabulary
        indptr = np.zeros(len(docs) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(d) for d in docs])
        indices = np.fromiter((vocab[g] for d in docs for g in d), dtype=np.int64, count=indptr[-1])
        tf = np.fromiter((c for d in docs for c in d.values()), dtype=np.float64, count=indptr[-1])
        df = np.bincount(indices, minlength=len(vocab))
        self.idf = np.log((1 + len(docs)) / (1 + df)) + 1.0
        values = (np.log(tf) + 1.0) * self.idf[indices]
        rows = np.repeat(np.arange(len(docs)), np.diff(indptr))
        values /= np.sqrt(np.bincount(rows, weights=values * values, minlength=len(docs)))[rows]
        x = sparse.csr_matrix((values, indices, indptr), shape=(len(docs), len(vocab)))
        x.sort_indices()
        return x


def fit_logistic(
    x: sparse.csr_matrix,
    dense: np.ndarray | None,
    y: np.ndarray,
    n_classes: int,
    *,
    c: float,
    tol: float,
    max_iter: int,
    memory: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with class-balanced sample weights, fitted by L-BFGS-B.

    The objective is scikit-learn's for `LogisticRegression(C=c, class_weight="balanced")`:
    the weighted mean of the cross-entropy plus ||W||^2 / (2 c n), the intercept not penalised.
    With two classes it is the binomial model scikit-learn fits (one weight vector, penalised
    once), the first class's weights held at zero. Stops when no gradient entry exceeds `tol`
    (scipy's `gtol`, as scikit-learn uses it) or the objective stops falling (relative change
    under 64 machine epsilons, scipy's `ftol`). `x` (sparse) and `dense` are the two blocks of
    features side by side; returns the coefficients (n_classes x features, in that order) and the
    intercepts.

    Identical feature columns are fitted as one: most n-grams occur in a single example, and all
    of an example's rare n-grams have the same column (33,000 columns are 12,000 distinct ones
    for the shipped intents). m identical columns get equal weights at the optimum, so they are
    one column scaled by sqrt(m) whose weight is sqrt(m) times each one's: the same objective
    and, from zero, the same L-BFGS-B steps (the solver only uses inner products, which the
    merge keeps), over a third of the weights. The stopping test is made on the original
    columns' gradients, so the fit stops where scikit-learn's does: the shipped intents'
    probabilities agree with scikit-learn's to 1e-11."""
    full_width = x.shape[1]
    x, group, shrink = _merge_identical_columns(x)
    n, d_sparse = x.shape
    d_dense = 0 if dense is None else dense.shape[1]
    d = d_sparse + d_dense
    k = n_classes
    counts = np.bincount(y, minlength=k).astype(np.float64)
    sw = (n / (k * counts))[y]
    sw_sum = float(sw.sum())
    l2 = 1.0 / (c * sw_sum)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    xt = x.T.tocsr()
    scale = (sw / sw_sum)[:, None]

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: d * k].reshape(d, k)
        z = x @ w[:d_sparse] + theta[d * k :]
        if dense is not None:
            z += dense @ w[d_sparse:]
        zmax = z.max(axis=1, keepdims=True)
        e = np.exp(z - zmax)
        se = e.sum(axis=1, keepdims=True)
        lse = np.log(se) + zmax
        loss = float(((lse - z) * onehot).sum(axis=1) @ sw) / sw_sum + 0.5 * l2 * float(
            w.ravel() @ w.ravel()
        )
        g = (e / se - onehot) * scale
        grad = np.empty_like(theta)
        gw = grad[: d * k].reshape(d, k)
        gw[:d_sparse] = xt @ g
        if dense is not None:
            gw[d_sparse:] = dense.T @ g
        gw += l2 * w
        grad[d * k :] = g.sum(axis=0)
        if k == 2:  # binary: scikit-learn fits one weight vector (the first class's row stays 0)
            gw[:, 0] = 0.0
            grad[d * k] = 0.0
        return loss, grad

    # The gradient of a merged column is sqrt(m) times each original column's: `tol` holds for
    # the originals.
    gscale = np.ones(d * k + k)
    gscale[: d_sparse * k] = np.repeat(shrink, k)
    theta = lbfgsb(
        loss_grad, np.zeros(d * k + k), tol=tol, max_iter=max_iter, memory=memory, gscale=gscale
    )
    w = theta[: d * k].reshape(d, k).T
    coef = np.empty((k, full_width + d_dense), order="F")  # prediction gathers columns
    coef[:, :full_width] = w[:, group] * shrink[group]
    coef[:, full_width:] = w[:, d_sparse:]
    return coef, theta[d * k :].copy()


def _merge_identical_columns(
    x: sparse.csr_matrix,
) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """`x` with each set of identical columns replaced by one, scaled by sqrt(m); the group of
    every original column; and 1/sqrt(m) per group. Columns are grouped by two random
    projections (identical columns give bit-identical sums) and the result is checked against
    `x`; should two different columns ever share both projections, nothing is merged."""
    n, d = x.shape
    if d == 0:
        return x, np.zeros(0, dtype=np.int64), np.zeros(0)
    probe = np.random.default_rng(0).random((n, 2))
    _, first, group, counts = np.unique(
        x.T @ probe, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    group = group.ravel()
    shrink = 1.0 / np.sqrt(counts)
    merged = (x[:, first] @ sparse.diags(np.sqrt(counts.astype(np.float64)))).tocsr()
    expanded = merged[:, group] @ sparse.diags(shrink[group])
    if abs(expanded - x).max() > 1e-12:
        return x, np.arange(d), np.ones(d)
    merged.sort_indices()
    return merged, group, shrink


def lbfgsb(
    func: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    *,
    tol: float,
    max_iter: int,
    memory: int = 10,
    gscale: np.ndarray | None = None,
) -> np.ndarray:
    """scipy's L-BFGS-B with scikit-learn's settings for LogisticRegression (maxls 50, ftol 64
    machine epsilons, gtol `tol`), the gradient test made on `g * gscale`."""
    last: list[tuple[np.ndarray, np.ndarray]] = []

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = func(x)
        last[:] = [(x.copy(), g)]
        return f, g

    def stop(intermediate_result: Any) -> None:
        x = intermediate_result.x
        if last and np.array_equal(last[0][0], x):
            g = last[0][1]
        else:
            g = func(x)[1]
        if gscale is not None and float(np.abs(g * gscale).max()) <= tol:
            raise StopIteration

    res = minimize(
        fg,
        x0,
        method="L-BFGS-B",
        jac=True,
        callback=stop,
        options={
            "maxiter": max_iter,
            "maxls": 50,
            "gtol": tol,
            "ftol": 64 * np.finfo(float).eps,
            "maxcor": memory,
        },
    )
    return res.x
