"""The example model plugin: learn to remove Gaussian noise from images.

The README's "Add a model" walkthrough: one network registered with `add_network`, a training step
that computes the loss and hands it to `self.step` (backward, accumulation, clipping, the update),
a loss dict with 'all', and `log_image` / `log_metrics` in validation.
"""

import torch

from engine import BaseModel
from models.archs import define_network
from models.shared_keys import LOSS_KEYS
from utils import log_image, log_metrics
from utils.losses import Loss


class Denoise_model(BaseModel):
    config_keys = {"train": LOSS_KEYS}  # the keys it reads beyond the trainer's

    def __init__(self, opt, logger):
        super().__init__(opt, logger)
        self.net_g = self.add_network("net_g", define_network(opt.network))
        self.criterion = Loss(self.opt["train"].loss).to(self.accelerator.device)

    def feed_data(self, data, is_train=True):
        self.sample = {"inp": data["cond"], "gt": data["gt"]}

    def optimize_parameters(self):
        pred = self.net_g(self.sample["inp"])
        loss = self.criterion(pred, self.sample["gt"])
        self.step(loss["all"])
        return loss

    def validate_step(self, batch, idx, lq_key, gt_key):
        self.feed_data(batch, is_train=False)
        with torch.no_grad():
            pred = self.net_g(self.sample["inp"])
        if idx == 0:  # one grid per validation is enough to watch progress
            triplet = torch.cat([self.sample["inp"], pred, self.sample["gt"]], dim=-1)
            log_image(
                self.opt, self.accelerator, triplet.cpu().numpy(), "val_input_pred_target", self.global_step
            )
        if hasattr(self.opt.val, "metrics"):
            log_metrics(
                pred.cpu().numpy(),
                self.sample["gt"].cpu().numpy(),
                self.opt.val.metrics,
                self.accelerator,
                self.global_step,
                comment="val_",
            )
        return idx + len(pred)
