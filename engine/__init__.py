"""The engine: everything that runs a model plugin, and `BaseModel`, the class a plugin subclasses.

The loop (`loop`), set-up (`start`), validation and `-test` (`evaluation`), optimisation, data loaders,
the network handles (`prepared_network`), the run's folder and process life (`run/`) and its checkpoints
and weights (`checkpoints/`); docs/layout.md lists every module. The engine imports no plugin:
trainer.py looks the model up in the registry and hands it over.
"""

from engine.base_model import BaseModel

__all__ = ["BaseModel"]
