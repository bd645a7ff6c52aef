"""Retrieval over the store's own knowledge files (Markdown, HTML, text).

Ranking is SQLite FTS5 with its built-in bm25(): a real, tested full-text ranking with a Porter
stemmer, in the standard library's sqlite3, with no model to download and no extra dependency. An
in-memory index of a few hundred chunks builds in milliseconds and answers in well under one.
bm25 scores are not comparable across queries, so "is this a good match?" is decided separately by
an IDF-weighted coverage of the question's content words (how much of what was asked the passage
actually talks about)."""

from __future__ import annotations

import math
import re
import sqlite3
import threading
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from agent.text import content_words, stem

SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm"}
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


class _HTMLText(HTMLParser):
    """HTML to Markdown-ish text: headings become '#' lines so chunking treats both alike."""

    BLOCK = {"p", "div", "li", "tr", "br", "section", "article", "table", "ul", "ol"}
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
        elif tag in ("td", "th"):
            self.out.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    return re.sub(r"\n\s*\n+", "\n\n", "".join(parser.out)).strip()


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


def _sentences(body: str) -> list[str]:
    out = []
    for line in body.splitlines():
        line = line.strip()
        if not line or re.fullmatch(r"\|?[\s:|-]+\|?", line):
            continue
        if line.startswith("|"):
            out.append(line)
            continue
        out.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", line) if s.strip())
    return out


class KnowledgeBase:
    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute(
            "CREATE VIRTUAL TABLE chunks USING fts5(source UNINDEXED, heading, body, "
            "tokenize='porter unicode61')"
        )
        self._db.executemany(
            "INSERT INTO chunks(rowid, source, heading, body) VALUES (?, ?, ?, ?)",
            [(i, c.source, f"{c.title} {c.heading}", c.body) for i, c in enumerate(chunks)],
        )
        self._df: dict[str, int] = {}

    @classmethod
    def from_folder(cls, folder: str | Path) -> KnowledgeBase:
        p = Path(folder)
        if not p.is_dir():
            raise FileNotFoundError(f"knowledge folder {p} does not exist")
        return cls(load_documents(p))

    @property
    def sources(self) -> list[str]:
        return sorted({c.source for c in self.chunks})

    def _doc_freq(self, term: str) -> int:
        if term not in self._df:
            row = self._db.execute(
                "SELECT count(*) FROM chunks WHERE chunks MATCH ?", (f'"{term}"',)
            ).fetchone()
            self._df[term] = int(row[0])
        return self._df[term]

    def _idf(self, term: str) -> float:
        n = max(1, len(self.chunks))
        df = self._doc_freq(term)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def _matches(self, rowid: int, term: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM chunks WHERE chunks MATCH ? AND rowid = ?", (f'"{term}"', rowid)
            ).fetchone()
            is not None
        )

    def search(self, query: str, k: int = 3) -> list[Passage]:
        raw = list(dict.fromkeys(content_words(query, expand=True)))
        # '~word' marks a paraphrase added by the thesaurus: searched, but worth half a word.
        terms = list(dict.fromkeys(t.lstrip("~") for t in raw))
        boost = {t: 0.5 for t in (r.lstrip("~") for r in raw if r.startswith("~"))}
        for t in raw:
            if not t.startswith("~"):
                boost[t] = 1.0
        if not terms or not self.chunks:
            return []
        fts_query = " OR ".join(f'"{t}"' for t in terms)
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, bm25(chunks, 0.0, 2.0, 1.0) AS score FROM chunks "
                "WHERE chunks MATCH ? ORDER BY score LIMIT ?",
                (fts_query, k),
            ).fetchall()
            if not rows:
                return []
            known = {t: self._idf(t) * boost[t] for t in terms if self._doc_freq(t)}
            # A word the store's content never uses still counts against the match (it may be the
            # very thing asked about: "crypto", "a store in Paris"), at the known words' mean weight.
            unknown_weight = 0.75 * (sum(known.values()) / len(known)) if known else 1.0
            total = sum(known.values()) + unknown_weight * sum(
                1 for t in terms if t not in known and boost[t] == 1.0
            )
            out = []
            for rowid, score in rows:
                covered = sum(w for t, w in known.items() if self._matches(rowid, t))
                chunk = self.chunks[rowid]
                out.append(
                    Passage(
                        source=chunk.source,
                        heading=chunk.heading,
                        text=self._best_sentences(
                            chunk, terms + re.findall(r"\d+(?:[.,]\d+)?", query)
                        ),
                        score=-float(score),
                        confidence=covered / total if total else 0.0,
                    )
                )
        return out

    def _best_sentences(self, chunk: Chunk, terms: list[str], n: int = 2) -> str:
        """The passage's sentences (or table rows) that say most about the question; a number
        the shopper gave (27.5 cm) counts triple, since a row holding it is usually the answer."""
        stems = {stem(t) for t in terms}
        sents = _sentences(chunk.body)
        if not sents:
            return chunk.body[:400]
        scored = []
        for i, s in enumerate(sents):
            words = {stem(w) for w in re.findall(r"\d+(?:[.,]\d+)?|[\w'’-]+", s.lower())}
            hits = words & stems
            score = sum(3 if h[0].isdigit() else 1 for h in hits)
            scored.append((score, -i, s))
        best = sorted(scored, reverse=True)[:n]
        best = [b for b in best if b[0] > 0] or best[:1]
        chosen = [s for _, _, s in sorted(best, key=lambda b: -b[1])]
        if any(s.startswith("|") for s in chosen):
            header = next((s for s in sents if s.startswith("|")), None)
            if header and header not in chosen:
                chosen.insert(0, header)
        return "\n".join(chosen)
