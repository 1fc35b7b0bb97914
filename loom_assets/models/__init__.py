"""Trained models Loom ships and the code that trains, saves and loads them.

Each model is a small artifact under `models/data/` (weights + a JSON sidecar carrying its
version), retrained with `loom train <model>`. Importing this package imports no ML framework.
"""
