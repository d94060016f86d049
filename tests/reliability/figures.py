"""Re-export of tests.figures for the reliability suite."""

from tests.figures import record  # noqa: F401
