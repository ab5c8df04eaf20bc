"""Whole jobs as one typed, re-runnable spec."""
