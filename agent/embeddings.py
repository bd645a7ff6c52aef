"""Vector similarity between a question and the store's passages.

CharGrams is TF-IDF over character n-grams within word bounds (3 to 5 letters, the `char_wb`
analyzer of scikit-learn and Rasa): it matches a typo ("recieved"), an inflection ("refunded"),
a German compound part and a cognate ("Irlanda", "Klarna") that whole-word bm25 misses. The
passages' vectors are built once at start; a question costs a few hundred dictionary look-ups
and one sparse dot product with numpy (well under a tenth of a millisecond for a store's pages).

Sentence vectors from a model (wordllama) were measured as a third ranking signal and left out:
see the README and bench/retrieval/wordvectors.py."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

NGRAMS = (3, 4, 5)
_BITS = 22
_MULT = np.uint64(0x9E3779B97F4A7C15)
_BASE = np.uint64(1_000_003)
_SPACE = 32


def gram_buckets(words: Sequence[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Hashed character n-grams (3-5) of each word padded with spaces, and each one's weight.

    Vectorised: the words are laid end to end, every n-gram is hashed with numpy, and those
    reaching across a word boundary are dropped, so a long message costs a few array operations
    rather than a Python loop per n-gram (the hashing trick of scikit-learn's HashingVectorizer;
    2^22 buckets make collisions rare at a store's vocabulary size)."""
    if not words:
        return np.zeros(0, dtype=np.uint64), np.zeros(0)
    text = "".join(f" {w} " for w, _ in words)
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    weight = np.repeat(np.array([w for _, w in words]), [len(w) + 2 for w, _ in words])
    inner = cp != _SPACE
    with np.errstate(over="ignore"):
        h = cp[:-2] * _BASE * _BASE + cp[1:-1] * _BASE + cp[2:]
        ok = inner[1:-1]
        hashes, weights = [h[ok] + np.uint64(3)], [weight[1:-1][ok]]
        for n in NGRAMS[1:]:
            h = h[:-1] * _BASE + cp[n - 1 :]
            ok = ok[:-1] & inner[n - 2 : len(inner) - 1]
            hashes.append(h[ok] + np.uint64(n))
            weights.append(weight[1 : len(weight) - n + 2][ok])
        buckets = (np.concatenate(hashes) * _MULT) >> np.uint64(64 - _BITS)
    return buckets, np.concatenate(weights)


_MASK = (1 << 64) - 1
_WORD_CACHE_MAX = 50000
# A word's hashed n-grams per length (3, 4, 5), per word: a question's words repeat from message
# to message (its sentences do not), and hashing one word in Python once beats a dozen numpy
# calls over the whole question every time. Shared by every CharGrams: buckets need no vocabulary.
_word_buckets: dict[str, tuple[list[int], ...]] = {}


def _buckets_of_word(word: str) -> tuple[list[int], ...]:
    """`gram_buckets([(word, w)])`'s buckets split by n-gram length, in Python integers: the same
    uint64 arithmetic (everything modulo 2^64) and the same n-grams (those with a space inside
    them dropped), in the same order."""
    cp = [32, *map(ord, word), 32]
    inner = [c != _SPACE for c in cp]
    mult, base = int(_MULT), int(_BASE)
    shift = 64 - _BITS
    out: list[list[int]] = []
    for n in NGRAMS:
        row = []
        for i in range(len(cp) - n + 1):
            if all(inner[i + 1 : i + n - 1]):
                h = 0
                for c in cp[i : i + n]:
                    h = (h * base + c) & _MASK
                row.append((((h + n) & _MASK) * mult & _MASK) >> shift)
        out.append(row)
    return tuple(out)


def query_buckets(words: Sequence[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """`gram_buckets(words)`, element for element, from each word's cached n-grams: that function
    lists every word's 3-grams, then every word's 4-grams, then 5-grams (an n-gram never spans two
    words), so the per-word lists are laid out in that order."""
    if not words:
        return np.zeros(0, dtype=np.uint64), np.zeros(0)
    cache = _word_buckets
    per_word = []
    for word, _ in words:
        grams = cache.get(word)
        if grams is None:
            grams = _buckets_of_word(word)
            if len(cache) >= _WORD_CACHE_MAX:
                cache.clear()
            cache[word] = grams
        per_word.append(grams)
    buckets: list[int] = []
    repeats: list[int] = []
    for n in range(len(NGRAMS)):
        for grams in per_word:
            buckets += grams[n]
            repeats.append(len(grams[n]))
    weight = np.array([w for _, w in words])
    weights = np.repeat(np.tile(weight, len(NGRAMS)), repeats)
    return np.array(buckets, dtype=np.uint64), weights


class CharGrams:
    """TF-IDF (sublinear tf, smoothed idf, l2-normalised) over word-bounded character n-grams."""

    def __init__(self, docs: Sequence[Sequence[tuple[str, float]]]) -> None:
        per_doc = []
        for doc in docs:
            b, w = gram_buckets(doc)
            ub, inv = np.unique(b, return_inverse=True)
            per_doc.append((ub, np.bincount(inv, weights=w)))
        self.n = len(per_doc)
        all_b = np.concatenate([b for b, _ in per_doc]) if per_doc else np.zeros(0, np.uint64)
        self.vocab, df = np.unique(all_b, return_counts=True)
        self.idf = np.log((1 + self.n) / (1 + df)) + 1.0
        self.max_idf = math.log(1 + self.n) + 1.0
        # Postings in CSR form over the sorted vocabulary: row = n-gram, (passage id, weight).
        rows, ids, vals = [], [], []
        for d, (b, tf) in enumerate(per_doc):
            r = np.searchsorted(self.vocab, b)
            v = (1 + np.log(tf)) * self.idf[r]
            v /= np.linalg.norm(v) or 1.0
            rows.append(r)
            ids.append(np.full(len(r), d))
            vals.append(v)
        if rows:
            r, i, v = np.concatenate(rows), np.concatenate(ids), np.concatenate(vals)
            order = np.argsort(r, kind="stable")
            self.ids, self.vals = i[order], v[order]
            self.indptr = np.concatenate(
                [[0], np.cumsum(np.bincount(r, minlength=len(self.vocab)))]
            )
        else:
            self.ids, self.vals, self.indptr = np.zeros(0, int), np.zeros(0), np.zeros(1, int)

    def similarity(self, words: dict[str, float]) -> np.ndarray:
        """Cosine of the weighted question words against every passage."""
        b, w = query_buckets([(k, v) for k, v in words.items() if v > 0])
        if not len(b) or not len(self.vocab):
            return np.zeros(self.n)
        ub, inv = np.unique(b, return_inverse=True)
        tf = np.bincount(inv, weights=w)
        tf = np.where(tf >= 1, 1 + np.log(np.maximum(tf, 1)), tf)
        r = np.minimum(np.searchsorted(self.vocab, ub), len(self.vocab) - 1)
        known = self.vocab[r] == ub
        qv = tf[known] * self.idf[r[known]]
        # An n-gram the pages never use has the highest idf; it stays in the norm, so a question
        # mostly about something else scores low.
        norm = math.sqrt(float(qv @ qv) + float(tf[~known] @ tf[~known]) * self.max_idf**2)
        qi = r[known]
        starts = self.indptr[qi]
        lens = self.indptr[qi + 1] - starts
        total = int(lens.sum())
        if not total or not norm:
            return np.zeros(self.n)
        # The positions of every posting of the question's n-grams, without a Python loop.
        before = np.cumsum(lens) - lens
        take = np.arange(total) + np.repeat(starts - before, lens)
        weights = np.repeat(qv, lens) * self.vals[take]
        return np.bincount(self.ids[take], weights=weights, minlength=self.n) / norm
