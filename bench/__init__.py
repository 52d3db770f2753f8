"""Benchmarks, run on demand (``./just bench``), never as timed tests."""
