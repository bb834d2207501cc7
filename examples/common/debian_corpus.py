"""A labelled text corpus available offline: Debian package descriptions
labelled with their archive section.

The text is each package's one-line description from the APT package index
(``apt-cache dumpavail``: Debian bookworm main, about 64,000 packages after
``apt-get update``, which make runs when the index is missing); the label is
its section (``utils``, ``net``, ``science``, ...). Identical descriptions are
kept once; the most common sections are kept, each capped so that no class
dominates. The split into train and test is by a hash of the text, so it is
the same on every machine with the same index. ``build`` writes it as a CSV
(text,label), the same format ``--data`` takes for a user's own corpus.
"""

from __future__ import annotations

import csv
import hashlib
import subprocess
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

SECTIONS = 12
PER_SECTION = 2500


def _records() -> List[Tuple[str, str]]:
    try:
        dump = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"apt-cache dumpavail failed ({e}): the Debian package corpus needs APT") from e
    rows, fields = [], {}
    for line in dump.splitlines() + [""]:
        if not line:
            if "Description" in fields and "Section" in fields:
                rows.append((fields["Description"].strip(), fields["Section"].split("/")[-1]))
            fields = {}
        elif not line.startswith(" ") and ": " in line:
            key, value = line.split(": ", 1)
            fields[key] = value
    if not rows:
        raise RuntimeError("the APT package index is empty: run `sudo apt-get update` (make does) or pass --data CSV")
    return rows


def build(path: Path) -> Dict[str, int]:
    """Write the corpus CSV (text,label,split); returns the count per section."""
    first: Dict[str, str] = {}
    for text, section in _records():
        first.setdefault(text, section)
    keep = [s for s, _ in Counter(first.values()).most_common(SECTIONS)]
    taken: Counter = Counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "split"])
        # In the order of a salted hash: a deterministic sample, not the
        # alphabetically first, and independent of the split's hash.
        def order(item):
            return hashlib.sha1(b"order:" + item[0].encode()).digest()

        for text, section in sorted(first.items(), key=order):
            if section not in keep or taken[section] >= PER_SECTION:
                continue
            taken[section] += 1
            digest = hashlib.sha1(text.encode()).digest()[0]
            writer.writerow([text, section, "test" if digest < 39 else "train"])  # about 15% test
    return dict(taken)


def load(path: Path) -> Tuple[List[str], List[str], List[str], List[str]]:
    """(train texts, train labels, test texts, test labels) of a CSV with
    text,label columns and an optional split column (without it, a hash of
    the text picks about 15% for test)."""
    train_x, train_y, test_x, test_y = [], [], [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            split = row.get("split") or ("test" if hashlib.sha1(row["text"].encode()).digest()[0] < 39 else "train")
            (test_x if split == "test" else train_x).append(row["text"])
            (test_y if split == "test" else train_y).append(row["label"])
    if not train_x or not test_x:
        raise ValueError(f"{path}: needs text,label rows for both training and test")
    return train_x, train_y, test_x, test_y
