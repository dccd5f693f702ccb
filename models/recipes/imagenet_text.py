"""ImageNet-1k class texts from timm's offline metadata (WordNet names, synonyms, glosses): no network needed."""

from __future__ import annotations

TEMPLATES = ("{}", "a {}", "a photo of a {}", "a close-up photo of the {}", "the {}")
MAX_SYNONYMS = 4


def class_descriptions() -> list[str]:
    """'tench, Tinca tinca: freshwater dace-like game fish …' for each of the 1000 classes, in index order."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i, detailed=True) for i in range(info.num_classes())]


def synonyms(description: str) -> list[str]:
    return [s.strip() for s in description.split(":")[0].split(",") if s.strip()]


def gloss(description: str) -> str:
    return description.split(":", 1)[1].strip() if ":" in description else ""


def class_texts() -> tuple[list[str], list[int]]:
    """(texts, class index): templated synonyms, the full description, and 'a <name>, <gloss>' per class."""
    texts, labels = [], []
    for c, desc in enumerate(class_descriptions()):
        names = synonyms(desc)
        for name in names[:MAX_SYNONYMS]:
            for template in TEMPLATES:
                texts.append(template.format(name))
                labels.append(c)
        texts += [desc, f"a {names[0]}, {gloss(desc)}"]
        labels += [c, c]
    return texts, labels
