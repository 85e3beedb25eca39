"""Lookup-free quantisation (LFQ), the quantiser of MAGVIT-v2 (Yu et al., 2023, "Language Model Beats
Diffusion: Tokenizer is Key to Visual Generation"), as the `quantizer: lfq` option of the VQVAE arch.

Each of the `codebook_dim` latent channels is quantised on its own to -1 or +1, so the codebook is the
implicit set of all 2^codebook_dim sign vectors and no nearest-neighbour search or learned codebook is
needed. Keep codebook_dim at 14 or below (`LookupFreeQuantizer` says why).
"""

import torch
import torch.nn.functional as F
from torch import nn


class LookupFreeQuantizer(nn.Module):
    """A code's index reads the signs as bits (channel 0 the most significant, + being 1). The loss is

        commitment_beta * mean((z - sg[q])^2)
      + entropy_weight * (mean per-position entropy - diversity_gamma * entropy of the batch-average code use)

    where a position's soft code assignment is softmax(-||z - c||^2 / temperature) over all codes c: low
    per-position entropy makes each latent commit to a code, high average entropy spreads the batch over
    the codebook. The entropy is computed exactly over all 2^codebook_dim codes, so memory grows as
    positions x 2^codebook_dim."""

    def __init__(
        self,
        codebook_dim: int,
        commitment_beta: float = 0.25,
        entropy_weight: float = 0.1,
        diversity_gamma: float = 1.0,
        temperature: float = 0.01,
    ):
        super().__init__()
        self.codebook_dim = codebook_dim
        self.commitment_beta = commitment_beta
        self.entropy_weight = entropy_weight
        self.diversity_gamma = diversity_gamma
        self.temperature = temperature

    def forward(self, z: torch.Tensor):
        """z: [batch, codebook_dim, *spatial] -> (quantized, loss, perplexity, indices [batch, *spatial]).

        `quantized` carries the straight-through gradient: its value is the sign code, its gradient z's.
        """
        # Bit weights 2^(D-1) ... 1, and every code as a +-1 vector in index order. Made here rather than
        # kept as buffers: transformers' `from_pretrained` builds models on the meta device and would leave
        # unsaved buffers empty.
        bit_values = 2 ** torch.arange(self.codebook_dim - 1, -1, -1, device=z.device)
        code_indices = torch.arange(2**self.codebook_dim, device=z.device)
        all_codes = ((code_indices[:, None] & bit_values) != 0).float() * 2.0 - 1.0

        positive = z > 0
        codes = torch.where(positive, 1.0, -1.0).to(z.dtype)
        indices = (positive.long() * _channels_last(bit_values, z.dim())).sum(dim=1)

        commitment = F.mse_loss(z, codes.detach())
        flat = z.movedim(1, -1).reshape(-1, self.codebook_dim).float()
        # In float32 even under autocast: at temperature 0.01 the logits reach hundreds, where bf16 rounding
        # would change the soft assignments.
        with torch.autocast(device_type=z.device.type, enabled=False):
            # -||z - c||^2 = 2 z.c - ||z||^2 - D: the last two terms are the same for every code c.
            log_probs = F.log_softmax(2.0 * flat @ all_codes.T / self.temperature, dim=-1)
            per_position_entropy = -(log_probs.exp() * log_probs).sum(dim=-1).mean()
            average_probs = log_probs.exp().mean(dim=0)
            codebook_entropy = -(average_probs * torch.log(average_probs.clamp_min(1e-12))).sum()
        entropy_penalty = per_position_entropy - self.diversity_gamma * codebook_entropy
        loss = self.commitment_beta * commitment + self.entropy_weight * entropy_penalty

        quantized = z + (codes - z).detach()
        return quantized, loss, codebook_perplexity(indices, 2**self.codebook_dim), indices


def codebook_perplexity(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """exp(entropy of the code histogram): how many codes the batch effectively uses (1 to codebook_size)."""
    counts = torch.bincount(indices.flatten(), minlength=codebook_size).float()
    probs = counts / counts.sum()
    return torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum())


def _channels_last(per_channel: torch.Tensor, ndim: int) -> torch.Tensor:
    """Shape [C] to [1, C, 1, ...] for broadcasting against a [batch, C, *spatial] tensor."""
    return per_channel.view(1, -1, *([1] * (ndim - 2)))
