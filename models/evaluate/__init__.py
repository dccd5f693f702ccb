"""Reproduce LiT's reported numbers on your own copies of ImageNet and COCO: `python -m models.evaluate --help`.

Protocol code that search and tagging reuse lives outside this package: `models.zeroshot`, `models.retrieval`,
`models.templates`. This package only reads datasets, encodes them and prints results.
"""

from models.evaluate.cli import main

__all__ = ["main"]
