"""Model plugins: `model_type: X` in the YAML names the class `X` in some `models/**/*_model.py`."""

from utils.registry import Registry

MODEL_REGISTRY = Registry("models", "_model.py", kind="model")


def model_names() -> list[str]:
    """The models a YAML can name: BaseModel's subclasses in `*_model.py` files (a helper class beside a
    model in its file is not one)."""
    return MODEL_REGISTRY.subclasses_of("BaseModel")


def find_model_class(model_type: str) -> type:
    """The class named `model_type`, importing only the file that defines it."""
    return MODEL_REGISTRY.get(model_type, what="model class (model_type)", candidates=model_names())


def create_model(opt, logger):
    """Instantiate the model that `opt.model_type` names (the public entry point for models)."""
    return find_model_class(opt["model_type"])(opt, logger)
