"""The version of amixup, in a module of its own so that amixup.records reads it without importing the package."""

__version__ = "0.1.0"
