"""Training recipes: one short visible loop (loop.py) and small recipe objects (recipes.py) that supply the loss."""
