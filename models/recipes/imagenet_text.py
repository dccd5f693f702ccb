"""ImageNet-1k class texts from timm's offline metadata (WordNet names, synonyms, glosses): no network needed.

These are the only "captions" the offline recipe has: the locked EfficientNet-Lite0 was trained on these 1000
classes, so a text that names (or describes) class c should land on c's direction in the image space.
"""

from __future__ import annotations

# Training phrasings. "{}" and "the {}" were dropped as near-duplicates of "a {}" for MiniLM (same dev recall).
TEMPLATES = ("a {}", "a photo of a {}", "a close-up photo of the {}")
# Held out of training: phrasings the validation split uses, so early stopping measures reading a new phrasing.
VAL_TEMPLATES = ("a picture of a {}", "there is a {} in this photo")
MAX_SYNONYMS = 4


def class_descriptions() -> list[str]:
    """'tench, Tinca tinca: freshwater dace-like game fish …' for each of the 1000 classes, in index order."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i, detailed=True) for i in range(info.num_classes())]


def class_ids() -> list[str]:
    """The WordNet ids ('n01440764' …) of the 1000 classes, in index order (the classifier's row order)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_label_name(i) for i in range(info.num_classes())]


def synonyms(description: str) -> list[str]:
    return [s.strip() for s in description.split(":")[0].split(",") if s.strip()]


def gloss(description: str) -> str:
    return description.split(":", 1)[1].strip() if ":" in description else ""


def class_texts(with_descriptions: bool = False) -> tuple[list[str], list[int]]:
    """(texts, class index): each class's first MAX_SYNONYMS synonyms in every TEMPLATES phrasing.

    Short phrasings are what people type, and the WordNet glosses already shape the description-initialised head.
    `with_descriptions` adds the full description and 'a <name>, <gloss>' per class: measured on the dev photos it
    changes nothing (within ±2 points), yet those long texts make every tuning batch pad to ~60 tokens (4x slower).
    """
    texts, labels = [], []
    for c, desc in enumerate(class_descriptions()):
        names = synonyms(desc)
        for name in names[:MAX_SYNONYMS]:
            for template in TEMPLATES:
                texts.append(template.format(name))
                labels.append(c)
        if with_descriptions:
            texts += [desc, f"a {names[0]}, {gloss(desc)}"]
            labels += [c, c]
    return texts, labels


def validation_texts() -> tuple[list[str], list[int]]:
    """(texts, class index): one held-out phrasing per class, a VAL_TEMPLATES template (never used in training)
    around one of its synonyms, both cycling with the class index so every template and many synonyms appear."""
    texts, labels = [], []
    for c, desc in enumerate(class_descriptions()):
        names = synonyms(desc)[:MAX_SYNONYMS]
        texts.append(VAL_TEMPLATES[c % len(VAL_TEMPLATES)].format(names[(c // len(VAL_TEMPLATES)) % len(names)]))
        labels.append(c)
    return texts, labels
