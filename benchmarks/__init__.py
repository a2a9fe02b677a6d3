"""Benchmarks: `python -m benchmarks [--quick] [NAME ...]` writes Markdown tables to results/."""
