"""Runnable applications built on conveyor's public API (``python -m examples.<name>``)."""
