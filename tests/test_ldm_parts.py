"""Stage-2 parts on tiny inputs: the UNet backends, the condition projector, schedules, guidance, samplers."""

import pytest
import torch

from models.archs import define_network
from models.ldm.sampling import guided_prediction, initial_noise, make_sampler, sample_latents
from models.ldm.schedules import make_noise_scheduler, min_snr_weights, signal_to_noise

TINY_UNET = {
    "type": "DiffusionUNet",
    "in_channels": 2,
    "out_channels": 2,
    "channels": [8, 16],
    "attention_levels": [False, True],
    "num_head_channels": [0, 8],
    "num_res_blocks": 1,
    "cross_attention_dim": 16,
    "norm_num_groups": 4,
}


def tiny_unet(**changes):
    torch.manual_seed(0)
    unet = define_network({**TINY_UNET, **changes}).eval()
    with torch.no_grad():  # MONAI zero-initialises its output layers: give them weights to see through
        for p in unet.parameters():
            if not p.any():
                p.normal_(0.0, 0.1)
    return unet


def tiny_projector(mode="vector", **changes):
    torch.manual_seed(1)
    block = {
        "type": "ConditionProjector",
        "mode": mode,
        "cross_attention_dim": 16,
        "in_channels": 3,
        **changes,
    }
    return define_network(block).eval()


@pytest.mark.parametrize(
    "changes, shape",
    [
        ({}, (2, 2, 8, 8)),
        ({"backend": "monai"}, (2, 2, 8, 8)),
        ({"spatial_dims": 3}, (2, 2, 4, 4, 4)),
        ({"with_conditioning": False}, (2, 2, 8, 8)),
    ],
)
def test_unet_backends_keep_the_shape_and_use_the_context(changes, shape):
    unet = tiny_unet(**changes)
    x, t = torch.randn(shape), torch.tensor([3, 700])
    context = torch.randn(2, 5, 16)
    with torch.no_grad():
        out = unet(x, t, context)
        assert out.shape == shape
        other = unet(x, t, torch.randn(2, 5, 16))
    if changes.get("with_conditioning", True):
        assert not torch.allclose(out, other)  # cross-attention reads the context
    else:
        assert torch.equal(out, other)


def test_unet_rejects_conditioning_without_attention():
    from utils.errors import ConfigError

    with pytest.raises(ConfigError, match="attention"):
        tiny_unet(attention_levels=[False, False])


@pytest.mark.parametrize("inject", ["time_embedding", "both"])
@pytest.mark.parametrize("backend", [{}, {"backend": "monai"}, {"spatial_dims": 3}])
def test_time_embedding_injection_reads_the_last_token_only_and_drops_cross_attention(inject, backend):
    unet = tiny_unet(condition_injection=inject, **backend)
    if unet.uses_diffusers:
        cross = any("CrossAttn" in type(block).__name__ for block in unet.unet.down_blocks)
    else:  # MONAI builds its attention blocks with a context exactly when it conditions
        cross = unet.unet.with_conditioning
    assert cross == (inject == "both")
    spatial = (8, 8, 8) if backend.get("spatial_dims") == 3 else (8, 8)
    x, t = torch.randn(2, 2, *spatial), torch.tensor([3, 700])
    context = torch.randn(2, 5, 16)
    other_summary = context.clone()
    other_summary[:, -1] = torch.randn(2, 16)
    other_tokens = context.clone()
    other_tokens[:, :-1] = torch.randn(2, 4, 16)
    with torch.no_grad():
        out = unet(x, t, context)
        assert not torch.allclose(out, unet(x, t, other_summary))  # the summary scales every block
        # the other tokens reach the UNet only through cross-attention
        assert torch.equal(out, unet(x, t, other_tokens)) == (inject == "time_embedding")


def test_an_unknown_injection_is_one_sentence():
    from utils.errors import ConfigError

    with pytest.raises(ConfigError, match="cross_attention, time_embedding, both"):
        tiny_unet(condition_injection="film")


def test_the_global_token_tells_the_numbers_apart():
    # a sum over a shared per-number MLP cannot tell (a, b) from (b, a); the summary token must
    projector = tiny_projector("vector", global_token=True)
    tokens = projector(torch.tensor([[0.2, 0.7, 0.1], [0.7, 0.2, 0.1]]))
    assert tokens.shape == (2, 4, 16)
    assert not torch.allclose(tokens[0, -1], tokens[1, -1], atol=1e-4)


def test_reciprocal_features_are_normalised_as_their_inverse_and_checked():
    from utils.errors import ConfigError

    projector = tiny_projector("vector", reciprocal_features=[1, 2])
    projector.set_vector_normalization([0.0, 0.0, 0.0], [1.0, 1.0, 2.0])
    x = torch.tensor([[3.0, 4.0, 0.5]])
    assert torch.allclose(projector.normalize_vector(x), torch.tensor([[3.0, 0.25, 1.0]]))
    with pytest.raises(ConfigError, match="both name \\[2\\]"):
        tiny_projector("vector", reciprocal_features=[2], log_features=[2])


def test_projector_tokens_for_each_condition_type_and_the_null_token():
    image = tiny_projector("image", in_channels=2)
    tokens = image(torch.zeros(3, 2, 4, 4))
    assert tokens.shape == (3, 16, 16)
    # positions differ even for a constant latent: each token says where it is
    assert not torch.allclose(tokens[:, 0], tokens[:, 5])
    vector = tiny_projector("vector")
    assert vector(torch.randn(4, 3)).shape == (4, 3, 16)
    label = tiny_projector("class", num_classes=5)
    assert label(torch.tensor([0, 4])).shape == (2, 1, 16)
    drop = torch.tensor([True, False, True, False])
    mixed = vector(torch.randn(4, 3), drop)
    assert torch.equal(mixed[0], vector.null_token[0].expand(3, 16))
    assert not torch.equal(mixed[1], vector.null_token[0].expand(3, 16))


def test_vector_normalization_is_saved_with_the_projector(tmp_path):
    from models.archs.condition_projector_arch import ConditionProjector_arch

    projector = tiny_projector("vector", log_features=[2])
    projector.set_vector_normalization([0.0, 1.0, 6.0], [2.0, 1.0, 0.5])
    x = torch.tensor([[1.0, 2.0, 1000.0]])
    expected = torch.tensor([[0.5, 1.0, (torch.log(torch.tensor(1000.0)) - 6.0) / 0.5]])
    assert torch.allclose(projector.normalize_vector(x), expected)
    projector.save_pretrained(tmp_path / "p")
    again = ConditionProjector_arch.from_pretrained(tmp_path / "p").eval()
    assert torch.allclose(again(x), projector(x))


def test_quadratic_schedule_and_min_snr_weights():
    quadratic = make_noise_scheduler(beta_schedule="quadratic", num_train_timesteps=100)
    expected = torch.linspace(1e-4**0.5, 0.02**0.5, 100) ** 2
    assert torch.allclose(quadratic.betas, expected)
    cosine = make_noise_scheduler(beta_schedule="cosine", prediction_type="v", num_train_timesteps=100)
    assert cosine.config.prediction_type == "v_prediction"
    t = torch.tensor([1, 50, 99])
    snr = signal_to_noise(cosine, t)
    weights = min_snr_weights(cosine, t, gamma=5.0)
    assert torch.allclose(weights, torch.clamp(snr, max=5.0) / (snr + 1))
    assert weights[0] < 1.0 and snr[-1] < 5.0  # clipped at low noise, not at high noise
    eps = make_noise_scheduler(num_train_timesteps=100)
    assert torch.allclose(
        min_snr_weights(eps, t, 5.0), torch.clamp(signal_to_noise(eps, t), max=5.0) / signal_to_noise(eps, t)
    )


def test_guidance_scale_one_equals_the_conditional_prediction():
    unet = tiny_unet()
    x, t = torch.randn(3, 2, 8, 8), torch.tensor([10, 500, 900])
    cond, null = torch.randn(3, 4, 16), torch.randn(3, 4, 16)
    with torch.no_grad():
        conditional, unconditional = unet(x, t, cond), unet(x, t, null)
        assert torch.equal(guided_prediction(unet, x, t, cond, null, 1.0), conditional)
        guided = guided_prediction(unet, x, t, cond, null, 3.0)  # through the doubled batch
    assert torch.allclose(guided, unconditional + 3.0 * (conditional - unconditional), atol=1e-5)
    assert not torch.allclose(guided, conditional, atol=1e-3)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm_solver"])
def test_samplers_are_deterministic_under_a_seed_and_condition_each_sample_on_its_own(sampler):
    unet = tiny_unet()
    config = make_noise_scheduler(num_train_timesteps=100, beta_schedule="linear").config
    context = torch.randn(3, 4, 16) * 3
    seeds = [5, 6, 7]

    def run(ctx, seeds):
        return sample_latents(
            unet, make_sampler(sampler, config), (2, 8, 8), seeds, ctx, num_inference_steps=4
        )

    first = run(context, seeds)
    assert first.shape == (3, 2, 8, 8) and torch.isfinite(first).all()
    assert torch.equal(first, run(context, seeds))
    assert not torch.allclose(first, run(context, [8, 9, 10]))
    # Swapping two samples' conditions (and seeds) swaps the samples: each uses its own condition.
    swapped = run(context[[1, 0, 2]], [6, 5, 7])
    assert torch.allclose(swapped, first[[1, 0, 2]], atol=1e-5)
    # and not the batch's first one (PTI-LDM-VAE's validation bug)
    assert not torch.allclose(first[1], run(context[:1].expand(3, 4, 16), seeds)[1], atol=1e-4)


def test_initial_noise_depends_on_the_seed_only():
    a = initial_noise((2, 4, 4), [3, 4], "cpu")
    b = initial_noise((2, 4, 4), [4], "cpu")
    assert torch.equal(a[1], b[0])


def test_condition_features_are_formulas_of_the_raw_entries_and_travel_with_the_projector(tmp_path):
    from models.archs.condition_projector_arch import ConditionProjector_arch

    # The defocus of a lens, 1/depth - 1/focus, from the raw [x, depth, focus]; then the focus itself.
    projector = tiny_projector("vector", features=["v0", "1/v1 - 1/v2", "log(v2)"])
    raw = torch.tensor([[0.5, 400.0, 1000.0], [0.1, 2000.0, 1000.0]])
    expected = torch.tensor([[0.5, 1 / 400 - 1 / 1000, 6.907755], [0.1, 1 / 2000 - 1 / 1000, 6.907755]])
    assert torch.allclose(projector.normalize_vector(raw), expected, rtol=1e-5, atol=1e-8)
    assert projector(raw).shape == (2, 3, 16)
    projector.set_vector_normalization([0.0, 0.0, 7.0], [1.0, 0.002, 1.0])
    projector.save_pretrained(tmp_path / "p")
    again = ConditionProjector_arch.from_pretrained(tmp_path / "p").eval()
    assert again.config.features == ["v0", "1/v1 - 1/v2", "log(v2)"]
    assert torch.equal(again(raw), projector(raw))


@pytest.mark.parametrize(
    "features, message",
    [
        (["v0", "1/v1 -"], "'1/v1 -', which is not a formula"),
        (["v0", "depth"], "names 'depth'; formulas use the vector's entries v0, v1"),
        (["lg(v1)", "v0"], "calls 'lg'.*did you mean 'log'"),
        (["v0", "__import__('os')"], "has no '__'"),
    ],
)
def test_a_bad_condition_feature_is_one_sentence_naming_it(features, message):
    from utils.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        tiny_projector("vector", in_channels=2, features=features)


def test_a_feature_beyond_the_vector_says_how_many_numbers_it_has():
    from utils.errors import ConfigError

    projector = tiny_projector("vector", in_channels=1, features=["1/v5"])
    with pytest.raises(ConfigError, match="up to v5, but the condition vector has only 3 numbers"):
        projector(torch.ones(2, 3))


def test_scale_shift_resnets_make_the_embedded_condition_scale_the_features():
    from diffusers.models.resnet import ResnetBlock2D

    from utils.errors import ConfigError

    unet = tiny_unet(condition_injection="time_embedding", resnet_time_scale_shift="scale_shift")
    blocks = [m for m in unet.modules() if isinstance(m, ResnetBlock2D)]
    assert blocks and all(b.time_embedding_norm == "scale_shift" for b in blocks)
    # the time embedding's projection gives a scale and a shift per channel
    assert all(b.time_emb_proj.out_features == 2 * b.conv1.out_channels for b in blocks)
    context = torch.randn(2, 3, 16)
    out = unet(torch.randn(2, 2, 8, 8), torch.tensor([10, 10]), context)
    assert out.shape == (2, 2, 8, 8)
    with pytest.raises(ConfigError, match="needs the diffusers backend"):
        tiny_unet(backend="monai", resnet_time_scale_shift="scale_shift")
    with pytest.raises(ConfigError, match="use one of default, scale_shift"):
        tiny_unet(resnet_time_scale_shift="film")


def test_coordinate_channels_give_the_unet_each_pixels_position(tmp_path):
    from models.archs.diffusion_unet_arch import DiffusionUNet_arch, coordinate_grid

    grid = coordinate_grid(torch.zeros(2, 3, 4, 5))
    assert grid.shape == (2, 2, 4, 5)
    assert torch.equal(grid[0, 0, :, 0], torch.linspace(-1, 1, 4)) and torch.equal(
        grid[1, 1, 0], torch.linspace(-1, 1, 5)
    )
    unet = tiny_unet(coordinate_channels=True)
    assert unet.unet.conv_in.in_channels == 2 + 2  # the latent's channels and one per axis
    sample, t, context = torch.randn(2, 2, 8, 8), torch.tensor([5, 500]), torch.randn(2, 3, 16)
    out = unet(sample, t, context)
    assert out.shape == sample.shape
    unet.save_pretrained(tmp_path / "u")
    again = DiffusionUNet_arch.from_pretrained(tmp_path / "u").eval()
    assert torch.equal(again(sample, t, context), out)
    # the MONAI backend (3D) gets them too
    monai = tiny_unet(spatial_dims=3, coordinate_channels=True)
    assert monai(torch.randn(1, 2, 8, 8, 8), torch.tensor([3]), torch.randn(1, 3, 16)).shape == (
        1,
        2,
        8,
        8,
        8,
    )


def test_monai_unet_without_heads_at_its_last_level_is_one_sentence():
    from utils.errors import ConfigError

    # MONAI's middle block always attends: no heads there was a ZeroDivisionError inside MONAI
    with pytest.raises(ConfigError, match="always attends in its middle block"):
        tiny_unet(
            spatial_dims=3, attention_levels=[False, False], num_head_channels=[0, 0], with_conditioning=False
        )
