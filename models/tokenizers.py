"""Text → token tensors. Every tower's tokenizer has one shape: `tokenizer(texts) -> {input_ids, attention_mask}`.

`HFTokenizer` wraps a transformers tokenizer with a fixed maximum length (padding to the longest text of the
batch). The LiT checkpoints need their own exact scheme (no [SEP], 16 ids): see `models.lit_tokenizer`.
"""

from __future__ import annotations

from pathlib import Path

import torch


class HFTokenizer:
    """A transformers tokenizer loaded from a local directory (never from a hub at run time)."""

    def __init__(self, source: str | Path, max_length: int = 64):
        from transformers import AutoTokenizer

        self.source = str(source)
        self.max_length = max_length
        self._tok = AutoTokenizer.from_pretrained(self.source)

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        enc = self._tok(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def spec(self) -> dict:
        return {"type": "hf", "source": self.source, "max_length": self.max_length}
