"""Keys that several models read, declared once and imported into each reader's `config_keys`."""

from utils.config.schema import Key

LOSS_KEYS = {
    "loss": Key("1*MSE", "str", "Loss expression for `utils.losses.Loss`, e.g. `1*MSE+0.1*L1`."),
}

PATCH_KEYS = {
    "patched": Key(
        False,
        "bool",
        "Train on random patches; validate, test and reconstruct whole images by blended sliding windows "
        "(utils/images/patches.py).",
    ),
    "patch_size": Key(
        None,
        "int|list",
        "Patch size under `patched`: an int or one per spatial axis.",
        minimum=1,
        nullable=True,
    ),
    "patch_overlap": Key(
        0.5,
        "float",
        "Fraction of a window shared with its neighbour at inference.",
        minimum=0.0,
        maximum=0.95,
    ),
}
