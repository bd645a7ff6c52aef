"""wordllama's static token embeddings as a ranking signal, for measurement only.

wordllama's wheel ships its 16 MB model (l2_supercat, 256 dimensions). `WordLlama.load()` looks for
the tokenizer in a folder the wheel does not use and would then try the network, so the files are
loaded by path: nothing is downloaded (checked with `HF_HUB_OFFLINE=1 unshare -n`).

    .venv/bin/pip install wordllama
    .venv/bin/python bench/retrieval/dev.py QUERIES KNOWLEDGE --words
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.query import Query


class WordVectors:
    """wordllama's 256-dimensional static embeddings, read from the wheel's own files."""

    CONFIG = "l2_supercat"
    DIM = 256

    def __init__(self, texts: Sequence[str]) -> None:
        import wordllama
        from safetensors import safe_open
        from tokenizers import Tokenizer
        from wordllama.inference import WordLlamaInference

        root = Path(wordllama.__file__).parent
        # Loaded by path: WordLlama.load() looks for the tokenizer in a folder the wheel does not
        # use and would then try the network.
        tokenizer = Tokenizer.from_file(
            str(root / "tokenizers" / f"{self.CONFIG}_tokenizer_config.json")
        )
        with safe_open(
            str(root / "weights" / f"{self.CONFIG}_{self.DIM}.safetensors"), framework="np"
        ) as f:
            embedding = f.get_tensor("embedding.weight")
        self.model = WordLlamaInference(embedding, tokenizer)
        self.matrix = self._embed(list(texts)) if texts else np.zeros((0, self.DIM))

    def _embed(self, texts: list[str]) -> np.ndarray:
        vecs = np.asarray(self.model.embed(texts), dtype=np.float64)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return vecs / norms

    def similarity(self, q: Query) -> np.ndarray:
        sentences = [(s.text, s.weight) for s in q.sentences if s.weight > 0 and s.text.strip()]
        if not sentences or not len(self.matrix):
            return np.zeros(len(self.matrix))
        vecs = self._embed([s for s, _ in sentences])
        q = (vecs * np.array([w for _, w in sentences])[:, None]).sum(axis=0)
        n = np.linalg.norm(q)
        return self.matrix @ (q / n) if n else np.zeros(len(self.matrix))
