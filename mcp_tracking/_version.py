"""The package version (one place; the stores and the dashboard stamp it without importing the package root)."""

__version__ = "0.1.0"
