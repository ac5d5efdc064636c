"""dbflywheel: the LLM data flywheel inside PostgreSQL."""

__version__ = "0.1.0"
