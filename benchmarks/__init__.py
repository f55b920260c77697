"""Benchmarks: `python -m benchmarks NAME` runs benchmarks.NAME.main()."""
