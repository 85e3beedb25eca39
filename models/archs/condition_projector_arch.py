"""`type: ConditionProjector`: turns a condition into the context tokens the UNet cross-attends to.

Three kinds of condition (`mode`), each giving tokens of width `cross_attention_dim` (details in
`ConditionProjector_config`): `image` (a VAE latent, one token per position), `vector` (a few numbers,
one token each) and `class` (an integer label, one token). `forward(condition, drop=None)` replaces the
tokens of the samples where `drop` is true by a learned null token, the "no condition" of
classifier-free guidance.
"""

import math

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from models.archs.config_signature import keys_from_signature
from models.archs.vector_features import compile_features
from utils.errors import ConfigError

MODES = ("image", "vector", "class")


class ConditionProjector_config(PretrainedConfig):
    """The keys of the three modes:

    - `image`: a condition latent (B, C, *spatial) from the frozen VAE -> one token per latent position,
      projected by a linear layer. Cross-attention does not know where a token came from, so a fixed
      sinusoidal embedding of its position is added (`position_embedding`); without it the UNet cannot
      tell which part of the condition was where.
    - `vector`: a few numbers (B, V), such as PSF coordinates -> one token per number: Fourier features
      of the normalised number through a small MLP, plus a learned embedding of which number it is.
      With `features` (formulas of the raw entries, `models/archs/vector_features.py`) the numbers are
      those formulas' values, e.g. a defocus `1/v2 - 1/v3` from two depths; `in_channels` is then their
      count. Normalisation (`vector_shift`, `vector_scale`, optional log of `log_features`) is stored in
      the config, so generation normalises exactly as training did. With `global_token` one more token
      comes last: all the numbers' features together through their own MLP, the summary a UNet with
      `condition_injection: time_embedding` adds to its time embedding (a shared per-number MLP, summed,
      cannot tell x from y).
    - `class`: an integer label (B,) -> one learned token.
    """

    model_type = "ConditionProjector"

    @keys_from_signature
    def __init__(
        self,
        mode: str = "image",
        in_channels: int = 4,
        cross_attention_dim: int = 512,
        position_embedding: bool = True,
        num_classes: int = 0,
        fourier_features: int = 8,
        hidden_dim: int = 128,
        vector_shift: list[float] | None = None,
        vector_scale: list[float] | None = None,
        log_features: list[int] = (),
        global_token: bool = False,
        reciprocal_features: list[int] = (),
        features: list[str] = (),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.features = [str(f) for f in features]
        self.vector_shift = list(vector_shift) if vector_shift is not None else None
        self.vector_scale = list(vector_scale) if vector_scale is not None else None
        self.log_features = list(log_features)
        self.reciprocal_features = list(reciprocal_features)


class ConditionProjector_arch(PreTrainedModel):
    config_class = ConditionProjector_config

    def __init__(self, config: ConditionProjector_config):
        super().__init__(config)
        _check_config(config)
        dim = config.cross_attention_dim
        # Compiled once here, not stored: the formulas in the config are what is saved.
        self.compute_features = compile_features(config.features) if config.features else None
        if config.mode == "image":
            self.proj = nn.Linear(config.in_channels, dim)
        elif config.mode == "vector":
            features = config.in_channels
            self.mlp = nn.Sequential(
                nn.Linear(1 + 2 * config.fourier_features, config.hidden_dim),
                nn.SiLU(),
                nn.Linear(config.hidden_dim, dim),
            )
            self.feature_embedding = nn.Parameter(torch.randn(1, features, dim) * 0.02)
            if config.global_token:
                self.global_mlp = nn.Sequential(
                    nn.Linear(features * (1 + 2 * config.fourier_features), config.hidden_dim),
                    nn.SiLU(),
                    nn.Linear(config.hidden_dim, config.hidden_dim),
                    nn.SiLU(),
                    nn.Linear(config.hidden_dim, dim),
                )
            shift = config.vector_shift or [0.0] * features
            scale = config.vector_scale or [1.0] * features
            # Buffers follow the module to its device; the config is the record that is saved.
            self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32), persistent=False)
            self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
            self.register_buffer(
                "frequencies",
                math.pi * 2.0 ** torch.arange(config.fourier_features).float(),
                persistent=False,
            )
        else:
            self.embedding = nn.Embedding(config.num_classes, dim)
        self.null_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.post_init()

    def _init_weights(self, module):
        pass  # keep PyTorch's initialisation

    def set_vector_normalization(self, shift: list[float], scale: list[float]) -> None:
        """Store the numbers' normalisation (from training data) in the config, which is saved with the run."""
        self.config.vector_shift, self.config.vector_scale = (
            [float(v) for v in shift],
            [float(v) for v in scale],
        )

    def normalize_vector(self, vector: torch.Tensor, check_finite: bool = False) -> torch.Tensor:
        vector = vector.float()
        if self.compute_features is not None:
            vector = self.compute_features(vector, check_finite)
        if self.config.log_features:
            index = torch.tensor(self.config.log_features, device=vector.device)
            vector = vector.index_copy(1, index, torch.log(vector[:, index].clamp(min=1e-12)))
        if self.config.reciprocal_features:
            index = torch.tensor(self.config.reciprocal_features, device=vector.device)
            vector = vector.index_copy(1, index, 1.0 / vector[:, index].clamp(min=1e-12))
        # Read from the config at every call (a few numbers): transformers saves parameters, not buffers.
        features = self.config.in_channels
        shift = torch.tensor(self.config.vector_shift or [0.0] * features, device=vector.device)
        scale = torch.tensor(self.config.vector_scale or [1.0] * features, device=vector.device)
        return (vector - shift) / scale

    def forward(self, condition: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        mode = self.config.mode
        if mode == "image":
            tokens = self.proj(condition.flatten(2).transpose(1, 2).to(self.proj.weight.dtype))
            if self.config.position_embedding:
                tokens = tokens + position_embedding(condition.shape[2:], tokens.shape[-1], tokens.device).to(
                    tokens.dtype
                )
        elif mode == "vector":
            x = self.normalize_vector(condition).unsqueeze(-1)  # (B, V, 1)
            frequencies = math.pi * 2.0 ** torch.arange(self.config.fourier_features, device=x.device)
            angles = x * frequencies
            features = torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)
            features = features.to(self.feature_embedding.dtype)
            tokens = self.mlp(features) + self.feature_embedding
            if self.config.global_token:
                summary = self.global_mlp(features.flatten(1)).unsqueeze(1)
                tokens = torch.cat([tokens, summary], dim=1)
        else:
            tokens = self.embedding(condition.long().reshape(-1)).unsqueeze(1)
        if drop is not None:
            null = self.null_token.to(tokens.dtype).expand_as(tokens)
            tokens = torch.where(drop.reshape(-1, 1, 1).to(tokens.device), null, tokens)
        return tokens

    def null_tokens(self, condition: torch.Tensor) -> torch.Tensor:
        """The unconditional context for a batch of conditions of this shape."""
        return self(condition, drop=torch.ones(len(condition), dtype=torch.bool, device=condition.device))


def position_embedding(shape, dim: int, device) -> torch.Tensor:
    """Sinusoidal embedding (N, dim) of the positions of a grid of `shape`, a band of channels per axis."""
    per_axis = 2 * (dim // (2 * len(shape)))
    half = per_axis // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=device).float() / max(half, 1))
    grids = torch.meshgrid(*[torch.arange(n, device=device).float() for n in shape], indexing="ij")
    bands = []
    for grid in grids:
        angles = grid.reshape(-1, 1) * frequencies
        bands += [torch.sin(angles), torch.cos(angles)]
    embedding = torch.cat(bands, dim=-1)
    return nn.functional.pad(embedding, (0, dim - embedding.shape[-1]))


def _check_config(config: ConditionProjector_config) -> None:
    if config.mode not in MODES:
        raise ConfigError(
            f"The condition projector's mode is {config.mode!r}; use one of {', '.join(MODES)}."
        )
    if config.mode == "class" and config.num_classes < 1:
        raise ConfigError("'condition.num_classes' must be set (at least 1) for 'condition.type: class'.")
    if config.global_token and config.mode != "vector":
        raise ConfigError(
            f"The condition projector's global_token is for a vector condition, not {config.mode!r} "
            "(a class condition's one token is already its summary)."
        )
    if config.features and config.mode != "vector":
        raise ConfigError(
            f"'condition.features' are formulas of a vector condition, not a {config.mode!r} one."
        )
    if config.features and len(config.features) != config.in_channels:
        raise ConfigError(
            f"The condition projector has {len(config.features)} features but in_channels {config.in_channels}; "
            "with `features`, in_channels is their count."
        )
    if config.mode == "vector":
        for key in ("log_features", "reciprocal_features"):
            bad = [i for i in getattr(config, key) if not 0 <= i < config.in_channels]
            if bad:
                raise ConfigError(
                    f"'condition.{key}' has {bad}, outside the {config.in_channels} numbers of the vector."
                )
        both = sorted(set(config.log_features) & set(config.reciprocal_features))
        if both:
            raise ConfigError(
                f"'condition.log_features' and 'condition.reciprocal_features' both name {both}; give each "
                "number one transform."
            )
