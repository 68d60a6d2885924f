"""Training and evaluation of emobatch's emotion classifier (python -m training.fit / .evaluate)."""
