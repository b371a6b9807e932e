"""openchamber: a native runtime for OpenCode chat clients."""

__version__ = "0.1.0"
