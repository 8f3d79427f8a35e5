"""Recommendation with explanations, the baselines, evaluation, metrics and the HTML report."""
