"""Push a run's `final/` folder to the Hugging Face Hub with a model card.

The token comes from the environment (`HF_TOKEN`) or `hf auth login`, never from the YAML; the
card holds the config with secrets redacted.
"""

import json
import os
import re
import shlex

import yaml

from utils.config.load import redact_secrets


def write_model_card(final_dir: str, opt: dict, arch_names: list[str], metrics: dict, repo_id: str) -> str:
    metric_rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items()) or "| - | - |"
    card = f"""---
library_name: transformers
tags:
- vae
- latent-diffusion
- imaging
---

# {opt.get("name", repo_id)}

Trained with `accelerate launch trainer.py -opt <config>.yml`; model type `{opt.get("model_type")}`.
Each trained network is in its own subfolder ({", ".join(f"`{n}`" for n in arch_names)}), saved with
`save_pretrained`. Load one with the arch class of this project:

```python
from models.archs import find_arch
config_cls, arch_cls = find_arch("{(opt.get("network") or {}).get("type", "<network.type>")}")
{arch_names[0]} = arch_cls.from_pretrained("{repo_id}", subfolder="{arch_names[0]}")
```

## Final validation metrics

| metric | value |
| --- | --- |
{metric_rows}

## Training configuration

```yaml
{yaml.safe_dump(redact_secrets(opt), sort_keys=False).strip()}
```
"""
    path = os.path.join(final_dir, "README.md")
    with open(path, "w") as f:
        f.write(card)
    with open(os.path.join(final_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return path


def push_final_folder(final_dir: str, repo_id: str, private: bool, commit_message: str, logger) -> str:
    """Create the repo if needed and upload `final_dir`; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=final_dir, repo_id=repo_id, commit_message=commit_message)
    logger.info(f"Pushed {final_dir} to the Hub as {repo_id}.")
    return str(getattr(info, "commit_url", info))


_TOKEN = re.compile(r"(hf|api_org)_[A-Za-z0-9]+")


def push_later_command(final_dir: str, repo_id: str) -> str:
    return f"python scripts/push_to_hub.py --run {shlex.quote(final_dir)} --repo {shlex.quote(repo_id)}"


def push_failure_sentence(error: BaseException, final_dir: str, repo_id: str) -> str:
    """One sentence for a failed push: what failed (no token echoed), where the work is, how to push later."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = _TOKEN.sub("hf_<redacted>", lines[0] if lines else "")[:300]
    return (
        f"The push to the Hub as '{repo_id}' failed ({type(error).__name__}: {reason}); the trained networks are "
        f"safe in '{final_dir}'; push them later with: {push_later_command(final_dir, repo_id)}"
    )


def try_push_final_folder(
    final_dir: str, repo_id: str, private: bool, commit_message: str, logger
) -> str | None:
    """`push_final_folder`, but a failure (no network, a refused token, a quota) is one logged sentence:
    the training's work is already safe in `final_dir`, so the run still ends well."""
    try:
        return push_final_folder(final_dir, repo_id, private, commit_message, logger)
    except Exception as error:  # requests, httpx and huggingface_hub raise many unrelated types here
        logger.warning(push_failure_sentence(error, final_dir, repo_id))
        return None
