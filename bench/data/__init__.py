"""Evaluation data assembled from files that ship in Debian and PyPI packages (no network, no scraping).

- `bench.data.gcompris`: read photos out of the Qt resource (.rcc) files of Debian's `gcompris-qt-data`.
- `bench.data.realphotos`: the captioned real-photo sets (`eval_captions.tsv`, `dev_captions.tsv`) by source key,
  and `python -m bench.data.realphotos --out DIR` to write them as files.
"""
