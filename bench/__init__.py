"""Benchmarks of the deploy driver; see bench/README section in the top-level README."""
