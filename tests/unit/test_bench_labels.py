"""The benches' labels. bench/quality.py's tag labels: a tag that names a concept holding the caption's subject
counts as right only in the WordNet-aware labels; spelling alone decides the strict ones (which the tag policy is
fitted on). bench/offline_eval.py's broad queries: which WordNet concept a category query names (--ceiling)."""

from __future__ import annotations

from pathlib import Path

from bench.offline_eval import concept_members
from bench.quality import Photo, hierarchy_labels, tag_labels
from models.offline_lite import read_concepts

NAMES = ("fish", "animal", "insect", "car", "goldfish", "bowl")


def _photo(caption: str) -> Photo:
    return Photo("k", Path("k.jpg"), caption, "other", "k")


def test_strict_labels_go_by_the_caption_words():
    labels = dict(zip(NAMES, tag_labels(NAMES, {}, _photo("a goldfish in a bowl")), strict=True))
    assert labels == {"fish": False, "animal": False, "insect": False, "car": False, "goldfish": True, "bowl": True}


def test_wordnet_aware_labels_add_the_concepts_above_the_subject():
    labels = dict(zip(NAMES, hierarchy_labels(NAMES, {}, _photo("a goldfish in a bowl")), strict=True))
    # the subject (before "in") is the goldfish: fish and animal hold it, insect and car do not
    assert labels == {"fish": True, "animal": True, "insect": False, "car": False, "goldfish": True, "bowl": True}
    ant = dict(zip(NAMES, hierarchy_labels(NAMES, {}, _photo("an ant on a leaf")), strict=True))
    assert ant["insect"] and ant["animal"] and not ant["fish"]


def test_wordnet_aware_labels_use_a_tags_synonyms_and_never_narrow_down():
    assert hierarchy_labels(("wildlife",), {"wildlife": ("animals",)}, _photo("a tabby cat")).tolist() == [True]
    # a tag narrower than the subject is not implied by it: an animal need not be a fish
    assert hierarchy_labels(("fish",), {}, _photo("an animal")).tolist() == [False]


def test_a_category_query_names_every_sense_of_its_last_word():
    concepts = read_concepts()["concepts"]
    hits, members = concept_members("a vehicle", concepts)
    assert [concepts[k]["text"].split(":")[0] for k in hits] == ["vehicle"]
    assert members == sorted(concepts[hits[0]]["members"]) and len(members) > 50
    food, _ = concept_members("food", concepts)
    assert len(food) == 2  # "food, nutrient" and "food, solid food": both senses pooled
    assert concept_members("tools", concepts)[0] == concept_members("a tool", concepts)[0]  # a plural: its singular
    assert concept_members("a landscape", concepts) is None  # no concept over ImageNet's classes: no ceiling row
