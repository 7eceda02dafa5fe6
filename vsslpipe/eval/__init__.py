"""Evaluation: feature export, retrieval, linear probe, fine-tuning, results."""
