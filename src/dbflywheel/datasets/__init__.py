"""Loaders of the real data sets shipped in dbflywheel/data/datasets."""
