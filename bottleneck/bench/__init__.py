"""Benchmarks (not imported by the library)."""
