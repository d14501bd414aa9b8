"""Importers for external (published, tabulated) HPO benchmarks into the tidy meta-dataset table."""
