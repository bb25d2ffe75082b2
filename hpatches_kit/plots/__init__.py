"""Plots: evaluation (eval.py), training (training.py), image-pair matching (pairs.py). All written atomically."""
