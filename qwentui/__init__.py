"""qwentui: a terminal operator console for a small LLM on an hourly-billed GPU box."""

__version__ = "0.1.0"
