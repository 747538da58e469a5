"""Sections of the Load page."""
