"""A model's trained networks on disk: `path.pretrained` in, `save_pretrained` folders out, EMA swaps.

A run's `final/` and `checkpoint-N/` folders hold one `save_pretrained` subfolder per network, named
as the model named it (`net_g`, `unet`); a bare `save_pretrained` folder is accepted for a model
with one network.
"""

import json
import os
from contextlib import contextmanager

from safetensors.torch import load_file

from utils.config.load import save_options
from utils.errors import ConfigError


def _archs(model):
    return [handle.arch for _, handle in model.named_networks]


def _first_reason(error: Exception) -> str:
    """The line of a load error that says what is wrong: torch's first line is only "Error(s) in loading
    state_dict for X:", and the size mismatches it lists below name the parameter and both shapes."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    mismatches = [line for line in lines if line.startswith("size mismatch")]
    if mismatches:
        more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
        return mismatches[0].rstrip(".") + more + "; were these weights trained with another 'network' block?"
    return lines[0] if lines else type(error).__name__


def load_pretrained(model, folder: str) -> None:
    """Load each network's weights from `folder/<name>/model.safetensors`; a misfit is one sentence."""
    if not os.path.isdir(folder):
        raise ConfigError(f"'path.pretrained' is '{folder}', which is not a folder.")
    names = [name for name, _ in model.named_networks]
    for name, handle in model.named_networks:
        sub = os.path.join(folder, name)
        if not os.path.isdir(sub) and len(names) == 1:
            sub = folder  # a bare save_pretrained folder of the only arch
        weights = os.path.join(sub, "model.safetensors")
        if not os.path.isfile(weights):
            raise ConfigError(
                f"No weights for '{name}' in '{folder}': expected '{weights}' "
                f"(a run's final/ or checkpoint-N folder holds one subfolder per network: {', '.join(names)})."
            )
        try:
            missing, unexpected = handle.arch.load_state_dict(load_file(weights), strict=False)
        except Exception as error:  # a shape mismatch, or a truncated / corrupt safetensors file
            raise ConfigError(
                f"The weights '{weights}' do not fit '{name}': {_first_reason(error)}"
            ) from None
        if missing or unexpected:
            raise ConfigError(
                f"The weights '{weights}' do not fit '{name}': missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}."
            )
    model.logger.info(f"Loaded weights from {folder}.")


@contextmanager
def ema_weights(emas: list, archs: list):
    """Inside, the archs hold their EMA weights (when `train.ema` is on); outside, the trained ones."""
    for ema, arch in zip(emas, archs):
        ema.store(arch.parameters())
        ema.copy_to(arch.parameters())
    try:
        yield
    finally:
        for ema, arch in zip(emas, archs):
            ema.restore(arch.parameters())


def save_archs(model, folder: str) -> None:
    """`save_pretrained` of every network (EMA weights when on) into `folder/<name>/`, and the run's
    `config.yml` (the scripts read the data settings of the weights' run from it); main process only."""
    if not model.accelerator.is_main_process:
        return
    with ema_weights(model.emas, _archs(model)):
        for name, handle in model.named_networks:
            handle.arch.save_pretrained(os.path.join(folder, name))
    save_options(model.opt, os.path.join(folder, "config.yml"))


def save_final(model) -> str:
    """`<run>/final/`: every trained network, the config and the last metrics; the Hub push when asked."""
    opt, accelerator = model.opt, model.accelerator
    final_dir = os.path.join(model.run_dir, "final")
    model.save_archs(final_dir)  # a model may extend it (the VAE stores its scale factor first)
    if accelerator.is_main_process:
        with open(os.path.join(final_dir, "metrics.json"), "w") as f:
            json.dump(model.last_metrics, f, indent=2)
        model.logger.info(f"Saved the trained networks to {final_dir}.")
        if opt.get("push_to_hub"):
            from engine.hub import try_push_final_folder, write_model_card

            repo_id = opt["hub_model_id"]
            names = [name for name, _ in model.named_networks]
            write_model_card(final_dir, opt.to_dict(), names, model.last_metrics, repo_id)
            try_push_final_folder(
                final_dir,
                repo_id,
                private=opt["hub_private"],
                commit_message=f"{opt['name']} at step {model.global_step}",
                logger=model.logger,
            )
    accelerator.wait_for_everyone()
    return final_dir
