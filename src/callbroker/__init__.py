"""callbroker — an open-source pay-per-call platform."""

__version__ = "0.1.0"
