"""The version of sparsecnn (one place, read by the package, the command line and golden files)."""

__version__ = "0.1.0"
