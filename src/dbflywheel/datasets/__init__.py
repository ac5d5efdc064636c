"""Loaders of the real public data sets shipped in dbflywheel/data/datasets (see ATTRIBUTION.md there)."""
