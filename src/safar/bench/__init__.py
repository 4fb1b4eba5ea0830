"""Benchmarks run by ``safar bench``."""
