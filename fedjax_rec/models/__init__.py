"""Recommender models: init + apply pure functions."""
