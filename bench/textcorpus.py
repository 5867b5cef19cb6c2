"""An offline text-classification corpus: Debian package descriptions labelled by their Section.

    python -m bench.textcorpus        # builds it and prints its shape and classes

The machine's own apt index (bookworm main, amd64: ~63,000 packages) is the
text: each package's ``Description:`` (in this index the one-line synopsis,
plus any continuation lines) is a document and its ``Section:`` (``libs``,
``python``, ``games``, ...) the label. Built in seconds, so nothing is cached:

- a document whose text (lower-cased, spaces collapsed) was already seen is
  dropped, whatever its section (libfoo1 / libfoo-dev / libfoo-doc often share
  a synopsis): no text is in both the training and the test split, and no text
  carries two labels;
- the TOP sections by count among what is left are kept;
- a stratified 75/25 split by `seed`; scikit-learn's ``TfidfVectorizer``
  (word unigrams and bigrams, sublinear_tf, min_df=2, l2-normalised rows,
  float64 by default) is fitted on the training documents only.

Where the index is absent (not a Debian machine), ``load`` raises
CorpusUnavailable with the reason; the benchmarks skip on it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGES = Path("/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4")
TOP = 20  # sections kept, by count
TEST_SIZE = 0.25


class CorpusUnavailable(Exception):
    """The package index is missing or cannot be decompressed here (the reason is the message)."""


@dataclass
class Corpus:
    X_train: object  # scipy.sparse CSR (n_train, vocabulary)
    X_test: object
    y_train: np.ndarray  # section names (str)
    y_test: np.ndarray
    vocabulary: int
    dropped_duplicates: int  # documents dropped because their text was already seen
    source: str

    def describe(self):
        n, d = self.X_train.shape
        return (f"Debian package descriptions ({self.source}): {n} train + {self.X_test.shape[0]} test documents, "
                f"{d} TF-IDF features ({self.X_train.dtype}, {self.X_train.nnz / n:.1f} non-zeros a row), "
                f"{len(np.unique(self.y_train))} sections; {self.dropped_duplicates} duplicate texts dropped")


def read_index(path=PACKAGES) -> str:
    """The index's text: the `lz4` Python package where installed, else the `lz4` command, else apt's
    own `apt-helper cat-file` (which decompresses its lists)."""
    path = Path(path)
    if not path.exists():
        raise CorpusUnavailable(f"{path} is absent (the corpus is Debian bookworm's apt index; run on a Debian "
                                "machine whose `apt-get update` has fetched it)")
    if path.suffix != ".lz4":
        return path.read_text(encoding="utf-8", errors="replace")
    try:
        import lz4.frame

        return lz4.frame.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    except ImportError:
        pass
    for command in (["lz4", "-dc", str(path)], ["/usr/lib/apt/apt-helper", "cat-file", str(path)]):
        if shutil.which(command[0]) is None:
            continue
        done = subprocess.run(command, capture_output=True, check=False)
        if done.returncode == 0 and done.stdout:
            return done.stdout.decode("utf-8", errors="replace")
    raise CorpusUnavailable(f"cannot decompress {path}: neither the lz4 Python package, the lz4 command nor "
                            "/usr/lib/apt/apt-helper is available")


def packages(text: str):
    """(description, section) of each stanza that has both; a description's continuation lines (those
    starting with a space; " ." is an empty line) are joined to its first line."""
    for stanza in text.split("\n\n"):
        description, section, field = [], None, None
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")):
                if field == "Description" and line.strip() != ".":
                    description.append(line.strip())
                continue
            field, _, value = line.partition(":")
            if field == "Description":
                description.append(value.strip())
            elif field == "Section":
                section = value.strip().rsplit("/", 1)[-1]  # contrib/games -> games
        if description and section:
            yield " ".join(description), section


def documents(text: str, top=TOP):
    """(docs, labels, dropped): the first document of each distinct text, in the TOP sections by count
    after the duplicates are dropped; dropped counts the duplicates."""
    seen, docs, labels = set(), [], []
    for description, section in packages(text):
        key = re.sub(r"\s+", " ", description.lower()).strip()
        if key in seen:
            continue
        seen.add(key)
        docs.append(description)
        labels.append(section)
    dropped = sum(1 for _ in packages(text)) - len(docs)
    names, counts = np.unique(labels, return_counts=True)
    keep = set(names[np.argsort(-counts, kind="stable")[:top]])
    chosen = [i for i, label in enumerate(labels) if label in keep]
    return [docs[i] for i in chosen], np.array([labels[i] for i in chosen]), dropped


def load(path=PACKAGES, *, top=TOP, seed=0, dtype=np.float64, text=None) -> Corpus:
    """The corpus, vectorised (see the module's docstring); `text` stands in for the index's text."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import train_test_split

    text = read_index(path) if text is None else text
    docs, labels, dropped = documents(text, top)
    if len(np.unique(labels)) < 2:
        raise CorpusUnavailable(f"{path} holds fewer than two sections with descriptions")
    train_docs, test_docs, y_train, y_test = train_test_split(docs, labels, test_size=TEST_SIZE,
                                                              random_state=seed, stratify=labels)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=dtype)
    X_train = vectorizer.fit_transform(train_docs).tocsr()
    X_test = vectorizer.transform(test_docs).tocsr()
    return Corpus(X_train, X_test, y_train, y_test, len(vectorizer.vocabulary_), dropped, Path(path).name)


def main():
    import time

    start = time.perf_counter()
    corpus = load()
    print(corpus.describe())
    print(f"built in {time.perf_counter() - start:.1f} s")
    names, counts = np.unique(corpus.y_train, return_counts=True)
    print(", ".join(f"{n} {c}" for n, c in sorted(zip(names, counts), key=lambda nc: -nc[1])))


if __name__ == "__main__":
    main()
