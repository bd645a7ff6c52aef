"""Intents learned from examples (the approach Rasa made standard), not from regular expressions.

Each intent is a name, a description, example utterances and a confidence threshold. handoff ships
a default set (agent/intent_data/*.yaml, several languages); a store adds examples or whole new
intents under `intents:` in its YAML, and the classifier is trained on the union at start.

The model is scikit-learn's, built and fitted by agent/textmodel.py (the same features and fit,
without importing scikit-learn at start-up): TF-IDF over character n-grams inside word bounds
(`char_wb`, 2-5: robust to typos, inflections and the compounds of German and Dutch) plus word
uni- and bigrams (word order: "don't cancel" vs "cancel"), and a multinomial logistic regression,
whose probabilities are used against each intent's threshold. Chosen by measurement over the alternatives (see the README's
"Intents" section and bench/intent_cv.py). A message is classified sentence by sentence, so a long
story still finds its request and one message can carry several intents.

Numbers, order numbers and emails are replaced by placeholders before training and prediction: the
classifier learns what people ask, never which order or price they named."""

from __future__ import annotations

import copy
import hashlib
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agent.text import normalize

DATA_DIR = Path(__file__).resolve().parent / "intent_data"
NONE = "none"
DEFAULT_THRESHOLD = 0.5
# The lower bar an intent needs when the store's pages have no answer for the message: the agent
# is about to offer a person anyway, so weaker evidence of a request may name the reason.
DEFAULT_FALLBACK = 0.3
WEAK_MARGIN = 2.0
# The solver runs to convergence: stopped early (tol 1e-3), the fitted weights depended on the
# path the solver took, and adding ten unrelated examples moved a sentence's probability from
# 0.9 to 0.4; at 1e-4 it is stable and trains as fast. (Still short of the optimum: fitted to
# 1e-7, some sentences of the evaluation stores move by up to 0.05, and which ones depends on the
# solver, so agent/textmodel.py runs scipy's L-BFGS-B on scikit-learn's path; see the README.)
TOL = 1e-4
MAX_ITER = 1000

_EMAIL = re.compile(r"[\w.%+-]+@[\w.-]+\.[a-z]{2,}")
_CODE = re.compile(
    r"#\s?[a-z]{0,4}\s?-?\s?\d[\d -]*\d|\b[a-z]{1,4}\s?-\s?\d[\d -]*\d|\b[a-z]+\d+[a-z\d]*\b"
)
_NUMBER = re.compile(r"[$€£]?\d+(?:[.,:]\d+)*\s?[%€$£]?")
_DIGIT = re.compile(r"\d")
_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+|\s+-+\s+(?!\d)|(?<=[!?])(?=[A-Za-z¿¡])")


@dataclass(frozen=True)
class IntentSpec:
    name: str
    description: str = ""
    examples: tuple[str, ...] = ()
    threshold: float = DEFAULT_THRESHOLD
    fallback_threshold: float = DEFAULT_FALLBACK


@dataclass
class SentenceIntents:
    """One sentence of a message: the best intent, its probability, and every intent over its bar;
    `weak`: the most likely request when none cleared its bar but it cleared its fallback bar."""

    text: str
    best: str
    probability: float
    intents: list[str] = field(default_factory=list)
    weak: list[str] = field(default_factory=list)


# Negation scope marking (a standard featurisation from sentiment analysis): the words after a
# negator, up to the next punctuation or "just/only", are marked, so "no need to cancel" and
# "I need to cancel" no longer share their n-grams. What a marked word means is still learned from
# the examples; nothing here knows an intent.
_NEGATORS = frozenset(
    "not no never nothing nobody without nicht kein keine keinen nie nichts niemand nunca nada "
    "nadie ni ne pas jamais rien personne niet geen nooit niets niemand".split()
)
# A token is one punctuation mark or a run without any, so a scope ends at a token that is
# exactly one of these (a set look-up, not a regular expression per token).
_SCOPE_END = frozenset(
    ". , ; : ! ? ( ) just only but nur sondern solo sino juste seulement alleen maar".split()
)
_TOKEN = re.compile(r"[.,;:!?()]|[^\s.,;:!?()]+")


def _mark_negation(text: str) -> str:
    out: list[str] = []
    scope = 0
    for tok in _TOKEN.findall(text):
        if tok in _SCOPE_END:
            scope = 0
            out.append(tok)
        elif tok in _NEGATORS:
            scope = 4
            out.append(tok)
        elif scope:
            scope -= 1
            out.append("not_" + tok)
        else:
            out.append(tok)
    return " ".join(out)


def prepare(text: str) -> str:
    """What the classifier sees: folded, contractions expanded, identifiers and numbers as
    placeholders (so "#AB 12345" and "£26.99" are features of their kind, not of their value),
    negation scopes marked."""
    t = normalize(text)
    # Each substitution only where it can match (most sentences have no email and no digit): an
    # email needs its "@", an identifier and a number each a digit (`\d`, as they read it).
    if "@" in t:
        t = _EMAIL.sub(" zzemail ", t)
    if _DIGIT.search(t):
        t = _CODE.sub(" zzorder ", t)
        t = _NUMBER.sub(" 0 ", t)
    return _mark_negation(_SPACES.sub(" ", t).strip())


def split_sentences(text: str) -> list[str]:
    """Sentences, the unit intents are found in; a run of chat text without punctuation is one."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip(" .,!?;-")]


# libyaml's parser with PyYAML's safe constructor when the wheel has it: the same data, and the
# shipped examples (a dozen files, 2,000 lines) parse in 5 ms instead of 70 at every start.
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> dict[str, Any]:
    """A shipped data file (safe YAML: plain data, no Python objects)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER) or {}


def shipped_intents() -> dict[str, IntentSpec]:
    """The default intents shipped with handoff, one YAML file each. Read once per process for
    the same files (name, size, mtime): parsing ~2000 examples costs ~60 ms of pure-Python YAML
    (5 ms with libyaml), and every agent built (a service start, each test's service, the eval)
    asks for them."""
    paths = sorted(DATA_DIR.glob("*.yaml"))
    key = tuple((p.name, st.st_size, st.st_mtime_ns) for p in paths for st in [p.stat()])
    specs = _SHIPPED.get(key)
    if specs is None:  # two threads at once both read the files; either result is the same
        specs = tuple(_read_shipped(paths).values())
        _SHIPPED.clear()
        _SHIPPED[key] = specs
    return {s.name: s for s in specs}  # IntentSpec is frozen; the dict is the caller's own


def _read_shipped(paths: Sequence[Path]) -> dict[str, IntentSpec]:
    out: dict[str, IntentSpec] = {}
    for path in paths:
        for name, spec in read_yaml(path).items():
            out[name] = IntentSpec(
                name=name,
                description=str(spec.get("description", "")),
                examples=tuple(str(e) for e in spec.get("examples") or ()),
                threshold=float(spec.get("threshold", DEFAULT_THRESHOLD)),
                fallback_threshold=float(spec.get("fallback_threshold", DEFAULT_FALLBACK)),
            )
    return out


_SHIPPED: dict[tuple[tuple[str, int, int], ...], tuple[IntentSpec, ...]] = {}


def merge_intents(shipped: dict[str, IntentSpec], store: dict[str, Any] | None) -> list[IntentSpec]:
    """The store's `intents:` on top of the shipped set: examples are added to an intent of the
    same name, a description or threshold replaces the shipped one, a new name is a new intent.
    `replace_examples: true` drops the shipped examples of that intent."""
    merged = dict(shipped)
    for name, raw in (store or {}).items():
        spec = raw if isinstance(raw, dict) else raw.model_dump()
        base = merged.get(name, IntentSpec(name=name))
        examples = tuple(str(e) for e in spec.get("examples") or ())
        threshold = spec.get("threshold")
        fallback = spec.get("fallback_threshold")
        merged[name] = IntentSpec(
            name=name,
            description=spec.get("description") or base.description,
            examples=examples if spec.get("replace_examples") else base.examples + examples,
            threshold=base.threshold if threshold is None else float(threshold),
            fallback_threshold=base.fallback_threshold if fallback is None else float(fallback),
        )
    return [s for s in merged.values() if s.examples]


def _fingerprint(specs: Sequence[IntentSpec], options: tuple[Any, ...]) -> str:
    h = hashlib.sha256(repr(options).encode())
    for s in sorted(specs, key=lambda s: s.name):
        h.update(s.name.encode())
        for e in s.examples:
            h.update(b"\0" + e.encode())
    return h.hexdigest()


def _sentence_vectors() -> Any:
    """WordLlama's static token embeddings (the 16 MB model ships inside its wheel), or None
    when the package is missing. Loaded from the wheel's own folder with downloads disabled: the
    library's default lookup misses its bundled tokenizer file and would try the network."""
    try:
        import wordllama
        from wordllama import WordLlama
    except ImportError:  # pragma: no cover - an install without the optional vectors
        return None
    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


_VECTORS: list[Any] = []


def sentence_vectors() -> Any:
    if not _VECTORS:
        _VECTORS.append(_sentence_vectors())
    return _VECTORS[0]


class IntentClassifier:
    """Trained once at start. Prediction needs no per-call machinery: the fitted vocabularies,
    IDF weights and coefficients are kept as arrays, so a sentence costs a dictionary lookup per
    n-gram and one small matrix product; results are cached per sentence."""

    def __init__(
        self,
        specs: Sequence[IntentSpec],
        *,
        c: float = 30.0,
        vectors: bool = True,
        vector_weight: float = 1.0,
        thresholds: dict[str, float] | None = None,
    ) -> None:
        from scipy import sparse
        from threadpoolctl import threadpool_limits

        from agent.textmodel import (
            Tfidf,
            char_wb_grams,
            fit_logistic,
            padded_words,
            word_char_grams,
            word_grams,
        )

        if not any(s.name == NONE for s in specs):
            raise ValueError(f"the intents need a '{NONE}' class: what is no request at all")
        self.specs = {s.name: s for s in specs}
        self.thresholds = {s.name: s.threshold for s in specs} | dict(thresholds or {})
        self.fallbacks = {s.name: s.fallback_threshold for s in specs}
        texts: list[str] = []
        labels: list[str] = []
        for s in specs:
            for e in s.examples:
                texts.append(prepare(e))
                labels.append(s.name)
        self.labels: list[str] = sorted(set(labels))
        index = {label: i for i, label in enumerate(self.labels)}
        y = np.array([index[label] for label in labels], dtype=np.int64)
        tfidfs = [Tfidf(char_wb_grams), Tfidf(word_grams)]
        blocks = [t.fit_transform(texts) for t in tfidfs]
        self._wl = sentence_vectors() if vectors else None
        self._vector_weight = vector_weight
        dense = self._embed(texts) if self._wl is not None else None
        x = sparse.hstack(blocks, format="csr")
        # One BLAS thread: on a small problem, threads only contend (5x slower on 2 busy cores).
        with threadpool_limits(1):
            coef, self._intercept = fit_logistic(
                x, dense, y, len(self.labels), c=c, tol=TOL, max_iter=MAX_ITER
            )
        # The fitted model as prediction reads it: per analyzer its vocabulary, idf and weights.
        self._parts = []
        offset = 0
        for t in tfidfs:
            n = len(t.vocabulary)
            self._parts.append((t.analyzer, t.vocabulary, t.idf, coef[:, offset : offset + n]))
            offset += n
        self._coef_vec = coef[:, offset:] if self._wl is not None else None
        # The same parts for one TF-IDF pass over all of them (see `_logits`): each analyzer's
        # vocabulary with its columns shifted to where its block sits in `coef`, every block's
        # idf in one array, and the blocks' weights as one matrix (`coef` without the vectors).
        self._tfidf_vocabs: list[tuple[Callable[[str], list[str]], dict[str, int]]] = []
        start = 0
        for analyzer, vocab, _, _ in self._parts:
            shifted = vocab if not start else {g: i + start for g, i in vocab.items()}
            self._tfidf_vocabs.append((analyzer, shifted))
            start += len(vocab)
        self._tfidf_idf = np.concatenate([idf for _, _, idf, _ in self._parts])
        self._tfidf_coef = coef[:, :offset]
        # A word's character n-grams as vocabulary columns, per word: a sentence's n-grams are its
        # words' in turn, and shoppers' words repeat from message to message (their sentences do
        # not). Shared by the copies `trained` hands out: it depends on the vocabulary only.
        self._word_columns: dict[str, tuple[int, ...]] = {}
        self._char_analyzer = char_wb_grams
        self._split_words = padded_words
        self._word_grams = word_char_grams
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, float, tuple[str, ...], tuple[str, ...]]] = {}

    def _embed(self, texts: list[str]) -> np.ndarray:
        e = np.asarray(self._wl.embed([t.replace("not_", "") for t in texts]), dtype=np.float64)
        return self._vector_weight * e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-9)

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def _embed_one(self, prepared: str) -> np.ndarray:
        """`_embed([prepared])[0]` without WordLlama's batch machinery (a third of a sentence's
        cost): one text needs no padding, so its mean token vector is a plain sum in float32, as
        `WordLlamaInference.embed` computes it, divided by the token count; the norm is
        `np.linalg.norm`'s own sum for a row (its `axis` case), the ids are clipped in Python."""
        wl = self._wl
        table = wl.embedding
        top = table.shape[0] - 1
        ids = wl.tokenizer.encode(prepared.replace("not_", ""), add_special_tokens=False).ids
        if any(i > top for i in ids):  # unsigned: never below 0
            ids = [min(i, top) for i in ids]
        pooled = table[ids].sum(axis=0, dtype=np.float32) / np.float32(max(len(ids), 1))
        e = pooled.astype(np.float64)
        norm = math.sqrt(float(np.add.reduce(e * e)))
        return self._vector_weight * e / (norm + 1e-9)

    def _char_columns(self, prepared: str, vocab: dict[str, int]) -> list[int]:
        """The vocabulary columns of `char_wb_grams(prepared)` in order (unknown n-grams left
        out), looked up per word."""
        cache = self._word_columns
        out: list[int] = []
        grams = self._word_grams
        for w in self._split_words(prepared):
            cols = cache.get(w)
            if cols is None:
                cols = tuple(i for i in map(vocab.get, grams(w)) if i is not None)
                if len(cache) >= 50000:
                    cache.clear()
                cache[w] = cols
            out += cols
        return out

    def _logits(self, prepared: str) -> np.ndarray:
        """The intents' scores for one prepared sentence: per analyzer its TF-IDF vector (sublinear
        tf, l2-normalised) times that analyzer's weights, then the sentence vector's part.

        The analyzers' n-grams are counted together and their weights computed in one pass
        (their columns never overlap), then each analyzer's slice is normalised and multiplied
        on its own, in the same order and with the same BLAS calls as one analyzer at a time:
        a dozen numpy calls a sentence fewer, the same bits."""
        out = self._intercept.copy()
        counts: Counter[int] = Counter()
        ends: list[int] = []
        for analyzer, vocab in self._tfidf_vocabs:
            if analyzer is self._char_analyzer:
                counts.update(self._char_columns(prepared, vocab))
            else:
                counts.update([i for i in map(vocab.get, analyzer(prepared)) if i is not None])
            ends.append(len(counts))
        if counts:
            # Each column once, in the order first seen: the order the weights are summed in.
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            weights = (np.log(tf) + 1.0) * self._tfidf_idf[idx]
            block = self._tfidf_coef[:, idx]
            start = 0
            for end in ends:
                if end > start:
                    w = weights[start:end]
                    w /= np.sqrt(w @ w)
                    out += block[:, start:end] @ w
                start = end
        if self._coef_vec is not None:
            out += self._coef_vec @ self._embed_one(prepared)
        return out

    def proba(self, text: str) -> np.ndarray:
        """Class probabilities (columns in `labels` order) for one sentence."""
        z = self._logits(prepare(text))
        z = np.exp(z - z.max())
        return z / z.sum()

    def _predict(self, prepared: str) -> tuple[str, float, tuple[str, ...], tuple[str, ...]]:
        hit = self._cache.get(prepared)
        if hit is not None:
            return hit
        z = self._logits(prepared)
        z = np.exp(z - z.max())
        row = z / z.sum()
        # One intent per sentence, the most likely, when it clears its own bar: a message with
        # several requests has them in several sentences; a sentence torn between two is unsure.
        best = int(np.argmax(row))
        label = self.labels[best]
        over = (
            (label,)
            if label != NONE and row[best] >= self.thresholds.get(label, DEFAULT_THRESHOLD)
            else ()
        )
        weak: tuple[str, ...] = ()
        if not over:
            # The most likely request, if it clears its fallback bar and stands out from the
            # other requests (a sentence torn between three requests names none of them).
            requests = [int(i) for i in np.argsort(row)[::-1] if self.labels[int(i)] != NONE]
            top, second = requests[0], (requests[1] if len(requests) > 1 else None)
            name = self.labels[top]
            if row[top] >= self.fallbacks.get(name, DEFAULT_FALLBACK) and (
                second is None or row[top] >= WEAK_MARGIN * row[second]
            ):
                weak = (name,)
        result = (label, float(row[best]), over, weak)
        with self._lock:
            if len(self._cache) > 20000:
                self._cache.clear()
            self._cache[prepared] = result
        return result

    def classify(self, text: str) -> list[SentenceIntents]:
        """Every sentence of `text` with its intents (those whose probability clears their bar).
        Two ways of reading more than the sentence were measured and dropped: long sentences
        clause by clause, and a sentence with no intent together with the one before it; both
        gave confident intents to stray phrases ("my account", a neighbour's denial)."""
        out: list[SentenceIntents] = []
        for raw in split_sentences(text):
            prepared = prepare(raw)
            if prepared:
                best, prob, over, weak = self._predict(prepared)
                out.append(SentenceIntents(raw, best, prob, list(over), list(weak)))
        return out

    def intents(self, text: str) -> set[str]:
        return {i for s in self.classify(text) for i in s.intents}


_TRAINED: dict[str, IntentClassifier] = {}
_TRAIN_LOCK = threading.Lock()


def trained(specs: Sequence[IntentSpec], **options: Any) -> IntentClassifier:
    """A classifier for these intents, trained once per process for the same examples (tests and
    the eval build many agents for one store; a store's service builds one)."""
    thresholds = dict(options.pop("thresholds", None) or {})
    key = _fingerprint(specs, tuple(sorted(options.items())))
    with _TRAIN_LOCK:
        base = _TRAINED.get(key)
        if base is None:
            base = IntentClassifier(specs, **options)
            _TRAINED[key] = base
    # The fitted model is shared; thresholds and the per-sentence cache are this caller's own.
    clf = copy.copy(base)
    clf.specs = {s.name: s for s in specs}
    clf.thresholds = {s.name: s.threshold for s in specs} | thresholds
    clf.fallbacks = {s.name: s.fallback_threshold for s in specs}
    clf._cache = {}
    clf._lock = threading.Lock()
    return clf


@lru_cache(maxsize=1)
def default_specs() -> tuple[IntentSpec, ...]:
    return tuple(merge_intents(shipped_intents(), None))
