"""The example model plugin: learn to remove Gaussian noise from images.

The README's "Add a model" walkthrough: one network registered with `add_network`, a training step
that computes the loss and hands it to `self.step` (backward, accumulation, clipping, the update),
a loss dict with 'all', and `self.log` / `self.log_images` in validation.
"""

import torch

from engine import BaseModel
from models.archs import define_network
from models.shared_keys import LOSS_KEYS
from utils.losses import Loss


class Denoise_model(BaseModel):
    config_keys = {"train": LOSS_KEYS}  # the keys it reads beyond the trainer's

    def __init__(self, opt, logger):
        super().__init__(opt, logger)
        self.net_g = self.add_network("net_g", define_network(opt.network))
        self.criterion = Loss(self.opt["train"].loss).to(self.accelerator.device)

    def validation_metric_names(self):
        return self.metric_names()  # validate_step logs the run's val.metrics alone

    def feed_data(self, data, is_train=True):
        self.sample = {"inp": data["cond"], "gt": data["gt"]}

    def optimize_parameters(self):
        pred = self.net_g(self.sample["inp"])
        loss = self.criterion(pred, self.sample["gt"])
        self.step(loss["all"])
        return loss

    def validate_step(self, batch):
        self.feed_data(batch, is_train=False)
        pred = self.net_g(self.sample["inp"])
        self.log(pred=pred, target=self.sample["gt"])  # the run's val.metrics, as val_<name>
        self.log_images("val_input_pred_target", torch.cat([self.sample["inp"], pred, self.sample["gt"]], -1))
