"""Sections of the Prune page."""
