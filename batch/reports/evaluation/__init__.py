"""Evaluation against gold labels: metrics with intervals, score curves, their rendering."""
