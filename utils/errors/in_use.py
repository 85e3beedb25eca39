"""A library's error while one config block is in use, named by that block.

`define_network` builds an arch from its block and nothing else (a dataset is built from its block too): a `ValueError` that diffusers or torch
raises there ("num_channels must be divisible by num_groups") comes from a value of that block, so the
sentence names it rather than reaching the user as an unexpected error. Only code that reads the one
block goes inside; a full memory is no value's mistake and passes through, and a file that cannot be
read keeps its own sentence (utils/errors/files.py).

    with block_in_use("network", "AutoencoderKL"):
        arch = arch_cls(config_cls(**kwargs))
"""

from contextlib import contextmanager

from utils.errors import ConfigError, UserError


class BlockError(ConfigError):
    """A library refused the values of one config block."""


@contextmanager
def block_in_use(where: str, reader: str):
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
            raise
        from utils.errors.files import as_user_error

        translated = as_user_error(error)  # a file that cannot be read keeps the sentence naming it
        if translated is not None:
            raise translated from error
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        said = f"{type(error).__name__}: {lines[0].rstrip('.')}" if lines else type(error).__name__
        raise BlockError(
            f"{reader} cannot be built from '{where}' ({said}); change the values of '{where}' "
            "(--debug shows the traceback)."
        ) from error
