"""LiT tokenization is exact: uncased WordPiece, [CLS] first, no [SEP], 15 pieces, zero-padded to 16."""

from __future__ import annotations

import pytest
import torch

from models.lit_tokenizer import LitTokenizer
from models.offline_lite import minilm_dir


@pytest.fixture(scope="module")
def tokenizer():
    return LitTokenizer(minilm_dir() / "vocab.txt")  # bert-base-uncased, the ids of every released LiT-B vocab


def test_golden_ids(tokenizer):
    out = tokenizer(["a photo of a cat"])
    assert out["input_ids"].tolist() == [[101, 1037, 6302, 1997, 1037, 4937] + [0] * 10]
    assert out["attention_mask"].tolist() == [[1] * 6 + [0] * 10]
    assert out["input_ids"].dtype == torch.long and out["attention_mask"].dtype == torch.long


def test_uncased_and_accent_folded_like_bert_uncased(tokenizer):
    assert torch.equal(tokenizer(["A PHOTO of a Cät"])["input_ids"], tokenizer(["a photo of a cat"])["input_ids"])


def test_truncation_keeps_the_first_15_pieces_and_adds_no_sep(tokenizer):
    text = "supercalifragilistic " * 3 + "one two three four five six seven"
    pieces = tokenizer._tok.encode(text, add_special_tokens=False).ids
    assert len(pieces) > 15
    ids = tokenizer([text])["input_ids"][0].tolist()
    assert ids == [101, *pieces[:15]]  # cuts may fall mid-word, exactly as LiT's preprocessing does
    assert 102 not in ids and tokenizer(["a cat"])["input_ids"][0].tolist().count(102) == 0


def test_batch_shape_empty_text_and_mask(tokenizer):
    out = tokenizer(["", "a dog", "sunset over the mountains"])
    assert out["input_ids"].shape == out["attention_mask"].shape == (3, 16)
    assert out["input_ids"][0].tolist() == [101] + [0] * 15
    assert torch.equal(out["attention_mask"], (out["input_ids"] != 0).long())
    assert tokenizer([])["input_ids"].shape == (0, 16)


def test_single_string_is_refused_and_spec_is_jsonable(tokenizer):
    with pytest.raises(TypeError, match="list"):
        tokenizer("a cat")
    spec = tokenizer.spec()
    assert spec["type"] == "lit" and spec["length"] == 16 and spec["vocab"].endswith("vocab.txt")


def test_missing_vocab_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocabulary"):
        LitTokenizer(tmp_path / "nope.txt")
