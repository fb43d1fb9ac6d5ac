"""Offline question answering with printed-page citations over union magazines."""

__version__ = "0.1.0"
