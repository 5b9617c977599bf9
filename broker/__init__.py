"""polymq: one broker core, many front ends, one replicated log."""

__version__ = "0.1.0"
