"""The concept vocabulary (indexer/concepts.json): WordNet's facts about the
network's 1,000 ImageNet classes, and the lookups words will go through."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.concepts import CLASSES, Concepts, normalise

from .conftest import IMAGES


@pytest.fixture(scope="module")
def concepts() -> Concepts:
    return Concepts.load()


def _class(concepts: Concepts, wnid: str) -> int:
    return concepts.synsets.index(wnid)


def test_the_classes_are_the_classifiers_in_its_order(concepts: Concepts) -> None:
    # The ImageNet-1k training order: synset ids sorted, tench first.
    assert len(set(concepts.synsets)) == CLASSES
    assert list(concepts.synsets) == sorted(concepts.synsets)
    assert concepts.synsets[0] == "n01440764" and concepts.names[0] == "tench"
    assert concepts.names[_class(concepts, "n02099601")] == "golden retriever"


def test_general_words_reach_every_class_below_them(concepts: Concepts) -> None:
    # The counts measured with WordNet 3.0 when the issue was written.
    assert len(concepts.classes("dog")) == 118
    assert len(concepts.classes("vehicle")) == 67
    assert len(concepts.classes("food")) == 48
    dogs = set(concepts.classes("dog"))
    assert _class(concepts, "n02099601") in dogs  # golden retriever
    assert _class(concepts, "n02123045") not in dogs  # tabby cat
    assert dogs < set(concepts.classes("animal")) < set(concepts.classes("entity"))
    assert len(concepts.classes("entity")) == CLASSES


def test_every_class_is_reached_by_its_own_name(concepts: Concepts) -> None:
    for cls, name in enumerate(concepts.names):
        assert cls in concepts.classes(name), name


def test_words_are_found_as_people_type_them(concepts: Concepts) -> None:
    shark = concepts.classes("great white shark")
    assert len(shark) == 1
    assert concepts.classes("  Great_White   SHARKS ") == shark  # case, blanks, plural
    assert concepts.classes("dogs") == concepts.classes("dog")
    assert concepts.classes("geese") == concepts.classes("goose")  # WordNet's irregular plurals
    assert concepts.word("Parrots") == "parrot"
    assert normalise(" Red_\tFox ") == "red fox"


def test_unknown_words_reach_nothing_and_get_close_suggestions(concepts: Concepts) -> None:
    assert concepts.classes("qwertyuiop") == () and concepts.word("") is None
    assert concepts.suggest("qwertyuiop") == []
    assert "parrot" in concepts.suggest("parot")
    assert "butterfly" in concepts.suggest("butterfy")


def test_completion_offers_the_most_specific_words_first(concepts: Concepts) -> None:
    offered = concepts.complete("par")
    assert "parrot" in offered and all(w.startswith("par") for w in offered)
    reach = [len(concepts.classes(w)) for w in offered]
    assert reach == sorted(reach)
    assert concepts.complete("") == [] and concepts.complete("zzzzq") == []
    assert len(concepts.complete("a", limit=3)) == 3


def test_the_exported_model_speaks_this_vocabulary(concepts: Concepts, models_dir: Path) -> None:
    """The exported model's second output (the real EfficientNet-Lite0 weights'
    ImageNet classifier, same pass as the features), on a photo from images/
    decoded as indexing decodes it: its top class, looked up by position in the
    table, is the photo's word."""
    import numpy as np

    from indexer.decode import center_crop, decode_image
    from indexer.embed import Embedder

    embedder = Embedder(next(models_dir.glob("*.onnx")))
    assert embedder.classes == CLASSES
    pixels = center_crop(decode_image(IMAGES / "fruit" / "strawberry2.png").image, 224)
    vectors, probs = embedder.embed_with_concepts(pixels[None])
    assert probs is not None and probs.shape == (1, CLASSES)
    assert np.allclose(vectors, embedder.embed(pixels[None]), atol=1e-6)
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    top = int(probs[0].argmax())
    assert concepts.names[top] == "strawberry" and probs[0, top] > 0.5
    assert top in concepts.classes("fruit") and top not in concepts.classes("dog")
