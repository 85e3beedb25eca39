"""`BaseModel`, the class every model plugin subclasses; it lives with the engine that runs it."""

from engine import BaseModel

__all__ = ["BaseModel"]
