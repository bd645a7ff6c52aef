"""The store's own pages as passages, ranked for a shopper's question, with a confidence.

Loading: Markdown, HTML and text files split at headings (long sections again at paragraphs),
each table row also a passage of its own. Ranking: weighted bm25 plus character n-gram vectors,
fused (see KnowledgeBase). The answer: the passage's best sentences (agent/quoting.py). The README's
"Retrieval" section says why each piece was chosen and what it costs."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.embeddings import CharGrams
from agent.query import Group, Query, parse, stem, words_of
from agent.quoting import Unit, quote, split_units
from agent.text import STOPWORDS

SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm"}
# Groups at least this heavy are "what is asked" (the question and the sentence before it).
FOCUS = 0.5
# A word no page uses, in units of the highest idf (see `group_idf`).
UNKNOWN_WEIGHT = 1.0
# bm25 (in units of the highest idf) that counts as a full-strength match.
STRENGTH_FULL = 1.5
MAX_CHUNK = 1200


@dataclass(frozen=True)
class Chunk:
    source: str
    title: str
    heading: str
    body: str


@dataclass(frozen=True)
class Passage:
    source: str
    heading: str
    text: str
    score: float
    confidence: float
    features: dict[str, float] = field(default_factory=dict, compare=False)


class _HTMLText(HTMLParser):
    """HTML to Markdown-ish text: headings become '#' lines so chunking treats both alike."""

    BLOCK = {"p", "div", "li", "br", "section", "article", "table", "ul", "ol"}
    SKIP = {"script", "style", "nav", "footer", "head"}

    def __init__(self) -> None:
        super().__init__()
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCK:
            self.out.append("\n")
        elif tag == "tr":
            # One table row per line, in the Markdown form the chunker and the quoting read.
            self.out.append("\n")
        elif tag in ("td", "th"):
            self.out.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "tr":
            self.out.append(" |")
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    text = re.sub(r"\n\s*\n+", "\n\n", "".join(parser.out))
    return "\n".join(line.strip() for line in text.splitlines()).strip()


def chunk_document(source: str, text: str) -> list[Chunk]:
    """Split on headings; long sections split again on paragraph bounds."""
    title = source
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        m = re.match(r"^(#{1,6})\s+(.*)$", line.strip())
        if m:
            if len(m.group(1)) == 1 and title == source:
                title = m.group(2).strip()
            sections.append((m.group(2).strip(), []))
        else:
            sections[-1][1].append(line)
    chunks: list[Chunk] = []
    for heading, lines in sections:
        body = "\n".join(lines).strip()
        if not body:
            continue
        parts, current = [], ""
        for para in re.split(r"\n\s*\n", body):
            if current and len(current) + len(para) > MAX_CHUNK:
                parts.append(current)
                current = para
            else:
                current = f"{current}\n\n{para}" if current else para
        if current:
            parts.append(current)
        for part in parts:
            chunks.append(Chunk(source, title, heading or title, part.strip()))
    return chunks


def load_documents(folder: Path) -> list[Chunk]:
    chunks: list[Chunk] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in SUFFIXES or not path.is_file():
            continue
        raw = path.read_text(encoding="utf-8", errors="replace")
        text = html_to_text(raw) if path.suffix.lower() in (".html", ".htm") else raw
        chunks.extend(chunk_document(path.relative_to(folder).as_posix(), text))
    return chunks


class Scorer(Protocol):
    def similarity(self, q: Query) -> np.ndarray: ...


@dataclass
class _Indexed:
    chunk: Chunk
    tf: dict[str, float]
    length: float
    units: list[Unit]


class KnowledgeBase:
    """Hybrid ranking over the store's passages, built once at start.

    Lexical: bm25 (k1 1.2, b 0.75; heading words count double) over Snowball-stemmed words,
    with the question's per-term weights (agent/query.py). Vector: cosine over character n-gram
    TF-IDF (agent/embeddings.py). The two are fused by a normalised score mix; the confidence of
    the winner is judged separately (see `_confidence`), since neither score means "answers
    the question" on its own scale."""

    K1 = 1.2
    B = 0.75
    HEADING_WEIGHT = 2.0
    ROW_LENGTH: str | None = "table"
    LEXICAL_WEIGHT = 0.6
    VECTOR_WEIGHT = 0.4

    def __init__(
        self, chunks: list[Chunk], *, extra: Callable[[list[str]], Scorer] | None = None
    ) -> None:
        """`extra`: another vector signal built from the passages' texts (measurement only: see
        bench/retrieval/wordvectors.py), fused with the same weight as the character n-grams."""
        self.chunks = chunks
        sections = [self._indexed(c, split_units(c.body)) for c in chunks]
        # Each table row is also a passage of its own (with the table's header): a question about
        # one row ("how long to Spain?") should not lose to a short paragraph because the table
        # around the row is long. Rows do not count in the idf, so a header repeated on every
        # row does not look common.
        rows = []
        for c, ix in zip(chunks, sections, strict=True):
            for u in ix.units:
                if u.kind != "row" or not u.header:
                    continue
                table = [v for v in ix.units if v.kind == "row" and v.header == u.header]
                row = self._indexed(Chunk(c.source, c.title, c.heading, f"{u.header}\n{u.text}"), table)
                if self.ROW_LENGTH == "table":
                    row.length = max(row.length, sum(len(v.stems) for v in table))
                rows.append(row)
        if self.ROW_LENGTH is None:
            rows = []
        self._index: list[_Indexed] = sections + rows
        df: dict[str, int] = {}
        for ix in sections:
            for t in ix.tf:
                df[t] = df.get(t, 0) + 1
        n = max(1, len(chunks))
        avglen = sum(i.length for i in sections) / n if sections else 1.0
        # bm25's saturated term frequency per (stem, passage), computed once.
        self._postings: dict[str, list[tuple[int, float]]] = {}
        for i, ix in enumerate(self._index):
            norm = self.K1 * (1 - self.B + self.B * ix.length / avglen)
            for t, tf in ix.tf.items():
                self._postings.setdefault(t, []).append((i, tf * (self.K1 + 1) / (tf + norm)))
        self._idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self._unknown_idf = math.log(1 + (n + 0.5) / 0.5)
        texts = [f"{ix.chunk.title} {ix.chunk.heading} {ix.chunk.body}" for ix in self._index]
        self._grams = CharGrams(
            [[(w, 1.0) for w in words_of(t) if w not in STOPWORDS] for t in texts]
        )
        self._extra = extra(texts) if extra else None

    def _indexed(self, c: Chunk, units: list[Unit]) -> _Indexed:
        tf: dict[str, float] = {}
        for w in words_of(f"{c.title} {c.heading}"):
            if w not in STOPWORDS:
                s = stem(w)
                tf[s] = tf.get(s, 0.0) + self.HEADING_WEIGHT
        for w in words_of(c.body):
            if w not in STOPWORDS:
                s = stem(w)
                tf[s] = tf.get(s, 0.0) + 1.0
        return _Indexed(c, tf, sum(tf.values()), units)

    @classmethod
    def from_folder(cls, folder: str | Path, **kwargs: Any) -> KnowledgeBase:
        p = Path(folder)
        if not p.is_dir():
            raise FileNotFoundError(f"knowledge folder {p} does not exist")
        return cls(load_documents(p), **kwargs)

    @property
    def sources(self) -> list[str]:
        return sorted({c.source for c in self.chunks})

    def idf(self, term: str) -> float:
        return self._idf.get(term, 0.0)

    def group_idf(self, group: Group) -> float:
        """A concept is as specific as its most specific alternative the pages use; a word no page
        uses is as specific as a word in one passage (it may be the very thing asked about)."""
        known = [self._idf[t] for t in group.stems if t in self._idf]
        return max(known) if known else self._unknown_idf * UNKNOWN_WEIGHT

    # ------------------------------------------------------------ ranking

    def _bm25(self, q: Query) -> np.ndarray:
        scores = np.zeros(len(self._index))
        for g in q.groups:
            best: dict[int, float] = {}
            for t in g.stems:
                idf = self._idf.get(t)
                if idf is None:
                    continue
                for i, sat in self._postings[t]:
                    v = idf * sat
                    if v > best.get(i, 0.0):
                        best[i] = v
            for i, v in best.items():
                scores[i] += g.weight * v
        return scores

    def rank(self, q: Query) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        lexical = self._bm25(q)
        vector = self._grams.similarity(q.words)
        parts = {"bm25": lexical, "chars": vector}
        fused = self.LEXICAL_WEIGHT * _scaled(lexical) + self.VECTOR_WEIGHT * _scaled(vector)
        if self._extra is not None:
            ev = self._extra.similarity(q)
            parts["extra"] = ev
            fused = fused + self.VECTOR_WEIGHT * _scaled(ev)
        return fused, parts

    def _coverage(self, q: Query, i: int) -> float:
        """The idf-weighted share of what was asked (the question and the sentence before it,
        not the story around them) that the passage talks about; a word no page uses counts as
        missing at the highest idf (it may be the very thing asked about: "gift wrapping")."""
        tf = self._index[i].tf
        total = covered = 0.0
        for g in q.groups:
            if g.weight < FOCUS:
                continue
            w = g.weight * self.group_idf(g)
            total += w
            if any(t in tf for t in g.stems):
                covered += w
        return covered / total if total else 0.0

    def confidence(self, q: Query, i: int, lexical: float) -> float:
        """How sure the passage answers: half coverage (does it talk about everything asked?),
        half strength (bm25 in units of the rarest possible word: about one and a half rare words
        matched is a full-strength match). Coverage alone trusts a one-word question that matched
        a common word; strength alone trusts a long message that matched many loose words."""
        strength = min(1.0, lexical / (self._unknown_idf * STRENGTH_FULL))
        return 0.5 * self._coverage(q, i) + 0.5 * strength

    def search(self, query: str, k: int = 3, context: str | None = None) -> list[Passage]:
        """The k best passages, each quoted by its best sentences, with a confidence in [0, 1]
        that callers compare with `knowledge.min_confidence`."""
        if not self.chunks:
            return []
        q = parse(query, context)
        if q.empty:
            return []
        fused, parts = self.rank(q)
        order = np.argsort(-fused)[:k]
        out = []
        for i in order:
            if fused[i] <= 0:
                break
            ix = self._index[int(i)]
            conf = self.confidence(q, int(i), float(parts["bm25"][i]))
            out.append(
                Passage(
                    source=ix.chunk.source,
                    heading=ix.chunk.heading,
                    text=quote(ix.units, q, self.group_idf) or ix.chunk.body[:400],
                    score=float(fused[i]),
                    confidence=conf,
                    features={name: float(v[i]) for name, v in parts.items()},
                )
            )
        return out


def _scaled(v: np.ndarray) -> np.ndarray:
    top = float(v.max()) if len(v) else 0.0
    return v / top if top > 0 else v
