"""Reproducible recipes that produce the weights Loupe ships (run as `python -m models.recipes.<name>`)."""
