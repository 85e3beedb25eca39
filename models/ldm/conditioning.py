"""What a stage-2 UNet is conditioned on: the `condition` keys, the condition projector and its inputs.

    image   the condition image, encoded by the frozen VAE -> one token per latent position
    vector  a vector of numbers (PSF coordinates), normalised to about [-1, 1] -> Fourier features, MLP
    class   a class label -> a learned embedding
    none    an unconditional UNet (`network.with_conditioning: false`)

The projector (`models/archs/condition_projector_arch.py`) is trained with the UNet; `condition.inject`
says whether its tokens are attended to, added to the time embedding, or both. The functions take the
`LDM_model` whose condition they set up (its `cond_opt`, `cond_key`, `vae`, `unet`).
"""

import os

import torch

from models.archs import define_network
from models.archs.diffusion_unet_arch import INJECTIONS
from utils.config.schema import Key
from utils.errors import ConfigError
from utils.errors.files import read_json

CONDITION_TYPES = ("image", "vector", "class", "none")
DEFAULT_CONDITION_KEY = {"vector": "coords", "class": "label"}

CONDITION_KEYS = {
    "type": Key("image", "str", "`none` needs `network.with_conditioning: false`.", CONDITION_TYPES),
    "key": Key(
        None, "str", "Batch key of the condition (default: `val.lq_key`, `coords`, `label`).", nullable=True
    ),
    "indices": Key(
        None, "any", "Which numbers of a vector condition are used (default: all).", nullable=True
    ),
    "features": Key(
        None,
        "any",
        "Formulas of a vector condition's raw entries `v0, v1, ...` that replace it, e.g. "
        "`[v0, v1, '1/v2 - 1/v3']` (a defocus from two depths); the other vector keys then index these.",
        nullable=True,
    ),
    "log_features": Key(
        None, "any", "Vector entries normalised in log (e.g. depths), by index.", nullable=True
    ),
    "inject": Key(
        "cross_attention",
        "str",
        "Where the condition enters the UNet: `cross_attention` (tokens attended to), `time_embedding` (a "
        "summary added to the time embedding, which shifts every ResNet block, or scales and shifts it with "
        "`network.resnet_time_scale_shift: scale_shift`, 2D; vector and class conditions) or `both`.",
        INJECTIONS,
    ),
    "reciprocal_features": Key(
        None,
        "any",
        "Vector entries normalised as 1/value, by index: depths seen through a lens act by their inverse "
        "(defocus = 1/depth - 1/focus becomes a linear combination).",
        nullable=True,
    ),
    "num_classes": Key(0, "int", "Classes of a `class` condition.", minimum=0),
    "position_embedding": Key(True, "bool", "Sinusoidal positions on image tokens."),
    "concat": Key(
        False,
        "bool",
        "Stack an image condition's latent on the UNet input (`network.in_channels`: twice the latent's).",
    ),
    "fourier_features": Key(8, "int", "Fourier features per number of a vector condition.", minimum=0),
    "hidden_dim": Key(128, "int", "Width of the vector embedding's MLP.", minimum=1),
    "stats_batches": Key(8, "int", "Batches used to fit the vector normalisation.", minimum=1),
}

# The condition keys that hold lists (of formulas or of entry indices).
LIST_KEYS = ("features", "indices", "log_features", "reciprocal_features")


def condition_key(cond_opt, lq_key: str) -> str:
    """The batch key of the condition: `condition.key`, else `coords`, `label` or `val.lq_key` by type."""
    return cond_opt["key"] or DEFAULT_CONDITION_KEY.get(cond_opt["type"], lq_key)


def check_condition_lists(cond_opt) -> None:
    """Each list key a list (of entry numbers, but for `features`), and `features` and `indices` not both."""
    for name in LIST_KEYS:
        value = cond_opt[name]
        if value is not None and not isinstance(value, (list, tuple)):
            # A bare string would be read letter by letter ('v0' as the formulas 'v' and '0').
            raise ConfigError(f"'condition.{name}' is {value!r}; give a list, e.g. {name}: [{value!r}].")
        if name in ("features", "indices") and value is not None and not value:
            raise ConfigError(
                f"'condition.{name}' is an empty list, which would leave the model no numbers; leave it out "
                "to use every number of the condition vector."
            )
        if name != "features" and value is not None:
            wrong = [i for i in value if isinstance(i, bool) or not isinstance(i, int) or i < 0]
            if wrong:
                raise ConfigError(
                    f"'condition.{name}' has {wrong[0]!r}; give entry numbers 0, 1, ... of the condition vector."
                )
    if cond_opt["features"] is not None and cond_opt["indices"] is not None:
        raise ConfigError(
            "'condition.features' and 'condition.indices' both pick the condition's numbers; give one "
            "(a formula names its entries itself: v2 is entry 2)."
        )


def unet_network_block(model, network) -> dict:
    """The `network` block with `condition.inject` as the UNet's `condition_injection`."""
    inject = model.cond_opt["inject"]
    if inject != "cross_attention" and model.cond_opt["type"] == "image":
        raise ConfigError(
            f"'condition.inject: {inject}' needs a global condition (vector or class); an image "
            "condition has one token per latent position: use cross_attention or condition.concat."
        )
    block = dict(network)
    if block.get("condition_injection", inject) != inject:
        raise ConfigError(
            f"'network.condition_injection' is {block['condition_injection']!r} but 'condition.inject' is "
            f"{inject!r}; set condition.inject only."
        )
    block["condition_injection"] = inject
    return block


def check_unet_fits_condition(model, unet) -> None:
    """The UNet's channels and conditioning against the VAE's latents and the `condition` block (and
    `model.concat`, set from `condition.concat`)."""
    if model.concat and model.cond_opt["type"] != "image":
        raise ConfigError(
            "'condition.concat: true' stacks an image condition's latent; it needs condition.type: image."
        )
    expected = model.vae.latent_channels * (2 if model.concat else 1)
    if unet.config.in_channels != expected or unet.config.out_channels != model.vae.latent_channels:
        raise ConfigError(
            f"'network.in_channels' / 'network.out_channels' are {unet.config.in_channels} / "
            f"{unet.config.out_channels} but the VAE's latents have {model.vae.latent_channels} channels"
            + (" and condition.concat stacks the condition latent on them" if model.concat else "")
            + f"; set in_channels: {expected} and out_channels: {model.vae.latent_channels}."
        )
    conditioned = model.cond_opt["type"] != "none"
    if conditioned != bool(unet.config.with_conditioning):
        raise ConfigError(
            f"'condition.type' is {model.cond_opt['type']} but 'network.with_conditioning' is "
            f"{unet.config.with_conditioning}; condition the UNet exactly when there is a condition."
        )


def build_projector(model, loader):
    """The condition projector for `condition.type` (not `none`); a vector's length and normalisation come
    from `loader`'s first batches, or from `path.pretrained`'s projector it was trained with."""
    cond = model.cond_opt
    block = {
        "type": "ConditionProjector",
        "mode": cond["type"],
        "cross_attention_dim": model.unet.config.cross_attention_dim,
    }
    if cond["type"] == "image":
        block.update(in_channels=model.vae.latent_channels, position_embedding=cond["position_embedding"])
    elif cond["type"] == "class":
        block.update(num_classes=cond["num_classes"])
    else:
        first = condition_vector(model, next(iter(loader)))
        features = [str(f) for f in cond["features"] or []]
        block.update(
            in_channels=len(features) if features else first.shape[1],
            features=features,
            fourier_features=cond["fourier_features"],
            hidden_dim=cond["hidden_dim"],
            log_features=list(cond["log_features"] or []),
            reciprocal_features=list(cond["reciprocal_features"] or []),
            global_token=cond["inject"] != "cross_attention",
        )
    projector = define_network(block)
    if cond["type"] == "vector":
        saved = os.path.join(model.opt["path"].get("pretrained") or "", "projector", "config.json")
        if os.path.isfile(saved):  # trained weights come with the normalisation they were trained with
            config = read_json(saved)
            projector.set_vector_normalization(config["vector_shift"], config["vector_scale"])
        else:
            fit_vector_normalization(model, projector, loader)
    return projector


def condition_vector(model, batch) -> torch.Tensor:
    """The batch's vector condition as (B, V) floats, restricted to `condition.indices`."""
    if model.cond_key not in batch:
        raise ConfigError(
            f"The batch has no key '{model.cond_key}' (condition.key); its keys are {sorted(batch)}."
        )
    vector = torch.as_tensor(batch[model.cond_key]).float()
    vector = vector.reshape(len(vector), -1)
    indices = model.cond_opt["indices"]
    if indices is not None:
        outside = [i for i in indices if i >= vector.shape[1]]
        if outside:
            raise ConfigError(
                f"'condition.indices' has {outside}, outside the {vector.shape[1]} numbers of the condition "
                f"'{model.cond_key}'; give entries 0 to {vector.shape[1] - 1}."
            )
        vector = vector[:, list(indices)]
    return vector


def fit_vector_normalization(model, projector, loader):
    """Centre and scale each number to about [-1, 1] over the first training batches (after the log of
    `log_features`); a constant number (a fixed wavelength) keeps scale 1."""
    vectors = []
    for i, batch in enumerate(loader):
        if i >= model.cond_opt["stats_batches"]:
            break
        vectors.append(condition_vector(model, batch))
    identity = torch.zeros(projector.config.in_channels), torch.ones(projector.config.in_channels)
    projector.set_vector_normalization(*[t.tolist() for t in identity])
    values = projector.normalize_vector(torch.cat(vectors), check_finite=True)
    low, high = values.min(0).values, values.max(0).values
    shift = (high + low) / 2
    scale = torch.where(high - low > 1e-6, (high - low) / 2, torch.ones_like(low))
    projector.set_vector_normalization(shift.tolist(), scale.tolist())


def condition_inputs(model, data, device) -> dict:
    """The batch's condition as the projector takes it: `cond` (the image, vector or labels) and, for an
    image, `cond_latent` (its latent, or the cached one)."""
    sample = {}
    kind = model.cond_opt["type"]
    if kind == "image":
        if "cond_latent" in data:
            sample["cond_latent"] = data["cond_latent"].to(device)
        else:
            if model.cond_key not in data:
                raise ConfigError(
                    f"The batch has no condition image '{model.cond_key}' (condition.key, else val.lq_key); "
                    f"its keys are {sorted(data)}."
                )
            sample["cond"] = data[model.cond_key].to(device)
            sample["cond_latent"] = model.encode(sample["cond"])
    elif kind == "vector":
        sample["cond"] = condition_vector(model, data).to(device)
    elif kind == "class":
        labels = torch.as_tensor(data[model.cond_key])
        count = model.cond_opt["num_classes"]
        outside = labels[(labels < 0) | (labels >= count) | (labels != labels.long())]
        if len(outside):  # an embedding lookup past its table is an IndexError deep inside torch
            raise ConfigError(
                f"The batch's class label {outside[0].item():g} ('{model.cond_key}') is not one of 0 to "
                f"{count - 1}; set 'condition.num_classes' to more than the largest label."
            )
        sample["cond"] = labels.to(device)
    return sample


def projector_input(model) -> torch.Tensor | None:
    """What the projector of the fed sample takes: the condition's latent for an image, else the condition."""
    if model.projector is None:
        return None
    return model.sample["cond_latent"] if model.cond_opt["type"] == "image" else model.sample["cond"]
