"""Benchmarks and the loopback fake LLM provider they (and the end-to-end tests) run against.

`bench` is not part of the installed distribution: run it from the project root
(`python -m bench.fake_provider`, `python -m bench.baseline`).
"""
