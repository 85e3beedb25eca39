"""PTI-LDM-VAE's files both ways: read its `.pth` checkpoints (weights and training state), write a run's
weights as the files its loaders read.

- `files.py`: the key names of its training checkpoints, and reading them safely;
- `vae.py`: a VAE run started from `train.monai_checkpoint` (autoencoder, discriminator, optimizers, step);
- `export.py`: `scripts/export_pti.py`'s writer (`autoencoder.pt`, `diffusion_unet.pt`, `checkpoint.pth`);
- `generation.py`: the scripts' VAE and LDM pipeline built straight from a `.pth` and a YAML's network keys.

The stage-2 checkpoint's weights are read by `models/ldm/pti_checkpoint.py`.
"""
