"""Filters judge generated images; each returns one score dict per image."""
