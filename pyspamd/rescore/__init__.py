"""Scores fitted from labelled mail: symbol vectors (what fired, and how strongly), the
constrained logistic fit that turns them into additive scores, and the scores file."""
