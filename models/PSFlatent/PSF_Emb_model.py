"""PSF_Emb_model: a VAE over ray-traced PSFs, conditioned on their coordinates, whose latents interpolate.

    loss = recon(decode(z, c), psf)                        over a, b and m, with `train.loss`
         + kl_weight * KL(q(z | psf, c) || N(0, I))        closed form from mean and log-variance
         + interp_weight * |mean_m - (mean_a + mean_b) / 2|^2

a and b are neighbouring points and m their midpoint. The last term ("densify") lets a PSF at a field
point never ray-traced be predicted by decoding the mean of its neighbours' latents at its coordinates.
"""

import torch
import torch.nn.functional as F

from models.archs import define_network
from models.PSFlatent.PSF_model import PSF_model
from utils.config.schema import Key

EMB_TRAIN_KEYS = {
    "kl_weight": Key(1e-4, "float", "Weight of the KL term.", minimum=0.0),
    "interp_weight": Key(1.0, "float", "Weight of the latent interpolation loss.", minimum=0.0),
    "interp_distance": Key(
        0.25, "float", "Largest offset between a point and its neighbour, in coordinate units.", minimum=0.0
    ),
}


class PSF_Emb_model(PSF_model):
    config_keys = {**PSF_model.config_keys, "train": {**PSF_model.config_keys["train"], **EMB_TRAIN_KEYS}}

    def __init__(self, opt, logger):
        super().__init__(opt, logger)
        self.hp = {k: float(v) for k, v in self.config_values("train").items() if k in EMB_TRAIN_KEYS}
        self.net_g = self.add_network("net_g", define_network(opt.network))
        self.check_network_fits(self.net_g)

    def draw_coordinates(self, generator):
        """An interpolation triple: a point a, a neighbour b within `train.interp_distance` of it (in the
        [-1, 1] coordinates of `PSF_model`), and their midpoint m. `feed_data` ray-traces all three:
        self.sample gets 'inp', 'psf' (point a), 'inp_b', 'psf_b', 'inp_mid', 'psf_mid'."""
        a = 2.0 * torch.rand(3, generator=generator) - 1.0
        offset = (2.0 * torch.rand(3, generator=generator) - 1.0) * self.hp["interp_distance"]
        b = (a + offset).clamp(-1.0, 1.0)
        return {"inp": a, "inp_b": b, "inp_mid": (a + b) / 2.0}

    def compute_losses(self, sample_posterior: bool = True):
        """Every loss term on `self.sample`, and the network's output for the stacked a, b, m items. The
        encoder sees each real PSF with its coordinate embedding (an encoder fed anything else, noise
        say, learns latents unrelated to the PSF)."""
        s = self.sample
        n = len(s["inp"])
        psf = torch.cat([s["psf"], s["psf_b"], s["psf_mid"]])
        coords = torch.cat([s["inp"], s["inp_b"], s["inp_mid"]])
        out = self.net_g(psf, coords, sample_posterior=sample_posterior)
        recon = self.criterion(out.reconstruction, psf)
        kl = out.latent_dist.kl().mean()
        mean_a, mean_b, mean_mid = out.latent_dist.mean.split(n)
        interp = F.mse_loss(mean_mid, (mean_a + mean_b) / 2.0)
        total = recon["all"] + self.hp["kl_weight"] * kl + self.hp["interp_weight"] * interp
        terms = {k: v for k, v in recon.items() if k != "all"}  # the named terms of train.loss
        return {**terms, "recon": recon["all"], "kl": kl, "interp": interp, "all": total}, out

    def optimize_parameters(self):
        losses, _ = self.compute_losses(sample_posterior=True)
        self.step(losses["all"])
        return losses

    def validation_metric_names(self):
        losses = [*(n for n, _ in self.criterion.terms), "recon", "kl", "interp", "all"]
        return self.metric_names() | self.metric_names("interp_") | {f"val_loss_{k}" for k in losses}

    def validate_step(self, batch):
        """Scores the midpoint decoded from its endpoints' latents against the ray-traced truth on the
        validation points (never sampled in training), `val_interp_psnr`, next to `val_psnr` for the
        reconstruction of a PSF from its own latent."""
        self.feed_data(batch, is_train=False)
        losses, out = self.compute_losses(sample_posterior=False)
        n = len(self.sample["inp"])
        self.log({f"loss_{k}": v for k, v in losses.items()})

        recon, truth = out.reconstruction[:n], self.sample["psf"]
        self.log_psf_metrics(recon, truth)
        # Densify: the midpoint's PSF from its endpoints' latents alone, never from its own PSF.
        mean_a, mean_b, _ = out.latent_dist.mean.split(n)
        interpolated = self.net_g.decode((mean_a + mean_b) / 2.0, self.sample["inp_mid"])
        self.log_psf_metrics(interpolated, self.sample["psf_mid"], prefix="interp_")
        if self.validated_samples == 0:
            self.log_psf_grid(truth, recon, "val_psf_truth_recon_diff")
            self.log_psf_grid(self.sample["psf_mid"], interpolated, "val_interp_truth_pred_diff")
