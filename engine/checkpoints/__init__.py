"""Checkpoint folders (written atomically, rotated), save and resume, best weights, weights on disk."""
