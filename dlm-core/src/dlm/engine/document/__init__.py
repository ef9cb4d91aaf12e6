"""A document → training examples, stored images and token budgets, before any model loads."""
