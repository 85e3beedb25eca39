"""A run's weights as PTI-LDM-VAE's loaders read them (`scripts/export_pti.py`).

From a VAE run's `final/`, `best/` or `checkpoint-N/` (a `MonaiAutoencoderKL` net_g):
`autoencoder.pt` (MONAI's AutoencoderKL state dict) and `checkpoint.pth` with its VAE trainer's keys
(`files.py`). From an LDM run's folder (`backend: monai`, an image condition without position
embedding): `diffusion_unet.pt` (MONAI's DiffusionModelUNet state dict) and `checkpoint.pth` with its
LDM trainer's keys. The optimizer states come from a `checkpoint-N/` (Accelerate's `optimizer.bin`,
`optimizer_1.bin`), re-indexed to PTI-LDM-VAE's parameter order; `final/` and `best/` hold none.
"""

import json
import math
from pathlib import Path

import torch
import yaml

from models.archs.condition_projector_arch import ConditionProjector_arch
from models.archs.diffusion_unet_arch import DiffusionUNet_arch
from models.archs.monai_autoencoder_kl_arch import MonaiAutoencoderKL_arch, load_tensors_only
from models.archs.patch_discriminator_arch import PatchDiscriminator_arch
from utils.errors import UserError
from utils.errors.files import read_json


def export_run(folder: Path, out: Path) -> tuple[list[Path], str]:
    """Write the PTI-LDM-VAE files of the weights in `folder` into `out`; (files written, what they hold)."""
    folder = Path(folder)
    if (folder / "net_g" / "config.json").is_file():
        files, state, what = _vae(folder)
    elif (folder / "ldm.json").is_file():
        files, state, what = _ldm(folder)
    else:
        raise UserError(
            f"'{folder}' holds neither a VAE's net_g/ nor an LDM's ldm.json: give a run's final/, best/ or "
            "checkpoint-N/ folder."
        )
    state.update(_progress(folder))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in {**files, "checkpoint.pth": state}.items():
        torch.save(content, out / name)
        written.append(out / name)
    held = [k for k in state if k.startswith("optimizer")]
    summary = (
        f"{what}; epoch {state['epoch']}, step {state['total_step']}, best_val_loss {state['best_val_loss']:.6g}, "
        + (", ".join(held) if held else "no optimizer state (only a checkpoint-N/ folder holds one)")
    )
    return written, summary


def _vae(folder: Path):
    model_type = read_json(folder / "net_g" / "config.json").get("model_type")
    if model_type != "MonaiAutoencoderKL":
        raise UserError(
            f"'{folder / 'net_g'}' is a {model_type}; PTI-LDM-VAE's autoencoder is MONAI's AutoencoderKL, so "
            "only a run with 'network.type: MonaiAutoencoderKL' exports."
        )
    vae = MonaiAutoencoderKL_arch.from_pretrained(str(folder / "net_g"))
    autoencoder = vae.monai_autoencoder.state_dict()
    state, what = {"autoencoder_state_dict": autoencoder}, "the autoencoder"
    _add_optimizer(
        state, folder / "optimizer.bin", "optimizer_g_state_dict", _monai_names(vae, "monai_autoencoder.")
    )
    if (folder / "net_d" / "config.json").is_file():
        discriminator = PatchDiscriminator_arch.from_pretrained(str(folder / "net_d"))
        state["discriminator_state_dict"] = discriminator.monai_discriminator.state_dict()
        names = _monai_names(discriminator, "monai_discriminator.")
        _add_optimizer(state, folder / "optimizer_1.bin", "optimizer_d_state_dict", names)
        what += " and the discriminator"
    return {"autoencoder.pt": autoencoder}, state, what


def _ldm(folder: Path):
    description = read_json(folder / "ldm.json")
    unet = DiffusionUNet_arch.from_pretrained(str(folder / description["unet"]))
    if unet.uses_diffusers:
        raise UserError(
            f"'{folder}' holds a diffusers UNet; PTI-LDM-VAE's is MONAI's DiffusionModelUNet, so only a run with "
            "'network.backend: monai' exports."
        )
    condition = description["condition"]
    projector = None
    if description.get("projector"):
        projector = ConditionProjector_arch.from_pretrained(str(folder / description["projector"]))
    plain_linear = (
        projector is not None
        and projector.config.mode == "image"
        and not projector.config.position_embedding
        and not condition.get("concat")
        and condition.get("inject", "cross_attention") == "cross_attention"
    )
    if not plain_linear:
        raise UserError(
            f"'{folder}' conditions its UNet otherwise than PTI-LDM-VAE's linear condition projector, so it "
            "does not export: train with 'condition.type: image', 'condition.position_embedding: false' "
            "(and no concat or inject)."
        )
    weights = unet.unet.state_dict()
    state = {
        "unet_state_dict": weights,
        "condition_projector_state_dict": {
            "weight": projector.proj.weight.data,
            "bias": projector.proj.bias.data,
        },
    }
    # The run's one optimizer runs over the UNet's parameters, then the projector's (null token included).
    ours = _names(unet, "unet.") + _names(projector, "projector.")
    theirs = {f"unet.unet.{n}": n for n, _ in unet.unet.named_parameters()}
    theirs.update({"projector.proj.weight": "weight", "projector.proj.bias": "bias"})
    _add_optimizer(state, folder / "optimizer.bin", "optimizer_state_dict", (ours, theirs))
    return {"diffusion_unet.pt": weights}, state, "the UNet and the condition projector"


def _names(arch, prefix: str = "") -> list[str]:
    """The names of `arch`'s trainable parameters in the order its optimizer holds them."""
    return [prefix + n for n, p in arch.named_parameters() if p.requires_grad]


def _monai_names(arch, inner: str):
    """(our names, {our name: PTI-LDM-VAE's}) for an arch wrapping one MONAI network under `inner`."""
    names = _names(arch)
    return names, {n: n[len(inner) :] for n in names if n.startswith(inner)}


def _add_optimizer(state: dict, path: Path, key: str, names) -> None:
    """`state[key]`: the optimizer saved at `path` (when there is one) re-indexed to PTI-LDM-VAE's order,
    the parameters it has no counterpart for left out."""
    if not path.is_file():
        return
    ours, theirs = names
    saved = load_tensors_only(path, "optimizer state")
    flat = [i for group in saved["param_groups"] for i in group["params"]]
    if len(flat) != len(ours):
        raise UserError(f"'{path}' holds {len(flat)} parameters but the saved networks have {len(ours)}.")
    by_name = dict(zip(ours, flat))
    order = [name for name in ours if name in theirs]
    group = {k: v for k, v in saved["param_groups"][0].items() if k != "params"}
    state[key] = {
        "state": {j: saved["state"][by_name[n]] for j, n in enumerate(order) if by_name[n] in saved["state"]},
        "param_groups": [{**group, "params": list(range(len(order)))}],
    }


def _progress(folder: Path) -> dict:
    """epoch (the last finished one: PTI-LDM-VAE resumes at epoch + 1), total_step and best_val_loss."""
    loop = {}
    if (folder / "trainer_state.json").is_file():
        loop = json.loads((folder / "trainer_state.json").read_text())["loop"]
    step = loop.get("global_step")
    record = read_json(folder / "best.json") if (folder / "best.json").is_file() else {}
    if step is None:
        step = record.get("step")
    if step is None and folder.name == "final" and (folder / "config.yml").is_file():
        # final/ is written once the run has reached train.max_train_steps
        step = (yaml.safe_load((folder / "config.yml").read_text()).get("train") or {}).get("max_train_steps")
    epoch = loop.get("epoch", 0) - (1 if loop.get("epoch") and not loop.get("batches_in_epoch") else 0)
    metrics = read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    best = metrics.get("val_loss")
    run_best = folder.parent / "best" / "best.json"
    if best is None and run_best.is_file():
        record = read_json(run_best)
        if record.get("metric") == "val_loss" and (step is None or record["step"] <= step):
            best = record["value"]
    return {
        "epoch": int(epoch),
        "total_step": int(step or 0),
        "best_val_loss": float(best) if best is not None and math.isfinite(best) else math.inf,
    }
