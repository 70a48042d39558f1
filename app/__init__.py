"""hookql — a webhook engine for online marketplaces."""

__version__ = "0.1.0"
