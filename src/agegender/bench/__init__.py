"""Benchmarks: `agegender bench` (see `suite`). Timings belong here, never in tests."""
