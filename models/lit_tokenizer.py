"""LiT's exact text tokenization: uncased WordPiece, 15 pieces, a leading [CLS], no [SEP], zero-padded to 16.

The LiT text towers were trained on exactly this layout (shared/docs/lit-checkpoints.md §4); an off-the-shelf
BERT tokenizer call adds a trailing [SEP] and pads differently, which silently shifts every text embedding.
We use `tokenizers.BertWordPieceTokenizer(vocab, lowercase=True)` with `add_special_tokens=False` rather than
transformers' `BertTokenizer`, because transformers 5 silently ignores `vocab_file=` and maps every word to [UNK].
"""

from __future__ import annotations

from pathlib import Path

import torch

LIT_TEXT_LENGTH = 16  # [CLS] + 15 word pieces; the released towers never saw longer inputs
PAD_ID = 0  # LiT pads with id 0 and masks `ids != 0` (doc §4), whatever the vocabulary calls token 0


class LitTokenizer:
    """`tokenizer(texts) -> {"input_ids": (N, 16) int64, "attention_mask": (N, 16) int64}`, like `HFTokenizer`."""

    def __init__(self, vocab: str | Path, length: int = LIT_TEXT_LENGTH):
        from tokenizers import BertWordPieceTokenizer

        self.vocab = str(vocab)
        if not Path(self.vocab).is_file():
            raise FileNotFoundError(f"LiT vocabulary not found: {self.vocab} (one word piece per line, like "
                                    "LiT-B16B_2.txt or bert-base-uncased's vocab.txt)")
        self.length = length
        self._tok = BertWordPieceTokenizer(self.vocab, lowercase=True)
        cls_id = self._tok.token_to_id("[CLS]")
        if cls_id is None:
            raise ValueError(f"{self.vocab} has no [CLS] token; is it a BERT WordPiece vocabulary?")
        self.cls_id = cls_id

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        ids = torch.full((len(encodings), self.length), PAD_ID, dtype=torch.long)  # (N, L)
        for row, encoding in enumerate(encodings):
            pieces = [self.cls_id, *encoding.ids[: self.length - 1]]  # cuts may fall mid-word, as in LiT
            ids[row, : len(pieces)] = torch.tensor(pieces, dtype=torch.long)
        return {"input_ids": ids, "attention_mask": (ids != PAD_ID).long()}

    def spec(self) -> dict:
        return {"type": "lit", "vocab": self.vocab, "length": self.length}
