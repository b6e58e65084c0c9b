"""Benchmarks (bench/README.md): run by hand, never as timed tests."""
