"""Training and testing generated networks."""
