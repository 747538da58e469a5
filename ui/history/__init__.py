"""Sections of the History page, and the doorway to the run store (`tracking`)."""
