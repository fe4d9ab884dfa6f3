"""Evaluation and reports of runs."""
