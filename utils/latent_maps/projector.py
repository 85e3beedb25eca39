"""Latents for TensorBoard's embedding projector: vectors, a sprite of thumbnails and a metadata table."""

import numpy as np
import torch

PROJECTOR_TAG = "val_latents"


def write_projector(writer, features, names, groups, thumbs, step: int, tag: str = PROJECTOR_TAG) -> None:
    """`writer` is a torch SummaryWriter; files land in `<logdir>/<step>/<tag>/` and projector_config.pbtxt.

    Thumbnails are (N, h, w) uint8; the projector's sprite needs colour images in [0, 1].
    """
    sprite = torch.from_numpy(np.repeat(np.asarray(thumbs)[:, None], 3, axis=1).astype(np.float32) / 255.0)
    writer.add_embedding(
        torch.as_tensor(np.asarray(features, dtype=np.float32)),
        metadata=[[str(n), str(g)] for n, g in zip(names, groups)],
        metadata_header=["name", "group"],
        label_img=sprite,
        global_step=step,
        tag=tag,
    )
    writer.flush()
