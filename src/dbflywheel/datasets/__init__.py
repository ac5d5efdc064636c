"""Loaders for the real public datasets shipped in dbflywheel/data/datasets (see ATTRIBUTION.md there)."""
