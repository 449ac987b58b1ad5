import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hydra_wm.errors import CheckpointError, InputError
from hydra_wm.models.vae import WanVAE, load_vae, original_vae_shapes, tiled_map, vae_config

VAE_FIXTURE = FIXTURES / "official_vae_parity.safetensors"


def recipe_state(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic VAE weights (tests/fixtures/README.md): one generator per sorted key, then scaled by name."""
    state = {}
    for i, key in enumerate(sorted(shapes)):
        x = torch.randn(shapes[key], generator=torch.Generator().manual_seed(seed * 100003 + i))
        if key.endswith("gamma"):
            x = 1 + 0.1 * x
        elif key.endswith("bias"):
            x = 0.02 * x
        else:
            x = x / math.sqrt(math.prod(shapes[key][1:]))
        state[key] = x
    return state


def rel_l2(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.fixture(scope="module")
def reference() -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(str(VAE_FIXTURE), "pt") as f:
        meta = f.metadata()
    return meta, load_file(str(VAE_FIXTURE))


@pytest.fixture(scope="module")
def parity_vae(reference, tmp_path_factory) -> WanVAE:
    meta, _ = reference
    path = tmp_path_factory.mktemp("wan") / "Wan2.1_VAE.pth"
    torch.save(recipe_state(json.loads(meta["shapes"]), int(meta["seed"])), path)
    return load_vae(path)


@pytest.fixture(scope="module")
def debug_vae() -> WanVAE:
    torch.manual_seed(0)
    return WanVAE(vae_config("debug")).eval()


def test_layout_matches_published_checkpoint(reference):
    meta, _ = reference
    expected = {key: tuple(shape) for key, shape in json.loads(meta["shapes"]).items()}
    assert original_vae_shapes(vae_config("wan2.1")) == expected


@pytest.mark.slow
def test_encode_matches_reference(parity_vae, reference):
    _, tensors = reference
    latents = parity_vae.encode(tensors["video"])
    assert latents.shape == (1, 16, 3, 8, 8) and latents.dtype == torch.float32
    assert rel_l2(latents, tensors["latents"]) <= 1e-4


@pytest.mark.slow
def test_decode_matches_reference(parity_vae, reference):
    _, tensors = reference
    decoded = parity_vae.decode(tensors["latents"])
    assert decoded.shape == (1, 3, 9, 64, 64)
    assert rel_l2(decoded, tensors["decoded"]) <= 1e-4
    assert decoded.abs().max() <= 1.0


@pytest.mark.parametrize("fmt", ["model_state", "safetensors"])
def test_other_file_forms_load_the_same_weights(tmp_path, fmt):
    config = vae_config("debug")
    state = recipe_state(original_vae_shapes(config), seed=5)
    if fmt == "model_state":
        path = tmp_path / "Wan2.1_VAE.pth"
        torch.save({"model_state": state}, path)
    else:
        path = tmp_path / "Wan2.1_VAE.safetensors"
        save_file(state, str(path))
    vae = load_vae(path, config)
    converted = vae.model.state_dict()
    assert torch.equal(converted["encoder.conv_in.weight"], state["encoder.conv1.weight"])
    assert torch.equal(converted["decoder.up_blocks.1.resnets.0.conv_shortcut.bias"],
                       state["decoder.upsamples.4.shortcut.bias"])  # fmt: skip
    assert not any(p.requires_grad for p in vae.parameters())


def test_tiled_map_blends_exactly_for_local_functions():
    # A pointwise map must come back unchanged whatever the tiling: checks tile origins, output offsets and
    # that the blend weights sum to one everywhere.
    torch.manual_seed(0)
    latents = torch.randn(1, 4, 2, 19, 13)

    def up(t):
        return F.interpolate(t, scale_factor=(1, 8, 8), mode="nearest") * 2 + 1

    torch.testing.assert_close(tiled_map(up, latents, tile=8, overlap=3, scale=8), up(latents))
    video = torch.randn(1, 3, 1, 96, 80)

    def down(t):
        return F.avg_pool3d(t, (1, 8, 8))

    torch.testing.assert_close(tiled_map(down, video, tile=32, overlap=16, scale=1 / 8), down(video))


def _spatially_pointwise(vae: WanVAE) -> WanVAE:
    # Keep only the centre tap of every spatial kernel and switch off the (global) mid-block attention: the
    # VAE then has no spatial receptive field beyond aligned 8x8 blocks, so tiling must not change its output.
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if name.endswith("weight") and param.dim() >= 4 and param.shape[-1] == 3:
                centre = param[..., 1:2, 1:2].clone()
                param.zero_()
                param[..., 1:2, 1:2] = centre
            if "attentions.0.proj" in name:
                param.zero_()
    return vae


@pytest.mark.slow
def test_tiled_vae_matches_untiled_when_the_network_is_local(debug_vae):
    # Stated tolerance: tiling itself adds only float32 rounding (rel. L2 < 1e-5) once the network is
    # spatially local. With real (or random) weights tiles differ near their borders because the decoder's
    # receptive field and mid-block attention span the frame; the overlap ramps hide that, they cannot remove
    # it.
    vae = _spatially_pointwise(debug_vae)
    latents = torch.randn(1, 16, 1, 12, 12)
    tiled = vae.decode(latents, tiled=True, tile_size=64, tile_overlap=32)
    assert rel_l2(tiled, vae.decode(latents)) < 1e-5
    video = torch.rand(1, 3, 1, 96, 96) * 2 - 1
    tiled = vae.encode(video, tiled=True, tile_size=64, tile_overlap=32)
    assert rel_l2(tiled, vae.encode(video)) < 1e-5


def test_single_tile_is_identical_to_untiled(debug_vae):
    latents = torch.randn(1, 16, 2, 4, 6)
    assert torch.equal(debug_vae.decode(latents, tiled=True, tile_size=64, tile_overlap=32), debug_vae.decode(latents))


def test_bad_tiles_and_inputs_are_rejected(debug_vae):
    with pytest.raises(InputError, match="multiples of 8"):
        debug_vae.decode(torch.zeros(1, 16, 1, 4, 4), tiled=True, tile_size=60)
    with pytest.raises(InputError, match="1 \\+ 4k frames"):
        debug_vae.encode(torch.zeros(1, 3, 8, 32, 32))
    with pytest.raises(InputError, match="expected latents"):
        debug_vae.decode(torch.zeros(1, 4, 1, 4, 4))


def test_architecture_is_read_from_the_file_when_no_config_is_given(tmp_path):
    path = tmp_path / "vae.pth"
    torch.save(recipe_state(original_vae_shapes(vae_config("debug")), seed=6), path)
    assert load_vae(path).config == vae_config("debug")


def test_missing_file_names_where_to_get_it(tmp_path):
    with pytest.raises(CheckpointError, match="Wan2.1_VAE.pth.*huggingface.co/Wan-AI/Wan2.1-T2V-1.3B"):
        load_vae(tmp_path / "Wan2.1_VAE.pth")


def test_wrong_keys_and_shapes_give_one_line_errors(tmp_path):
    config = vae_config("debug")
    state = recipe_state(original_vae_shapes(config), seed=5)
    path = tmp_path / "vae.pth"

    renamed = dict(state)
    renamed["encoder.conv_in.weight"] = renamed.pop("encoder.conv1.weight")
    torch.save(renamed, path)
    with pytest.raises(CheckpointError) as err:
        load_vae(path, config)
    assert "'encoder.conv1.weight'" in str(err.value) and "\n" not in str(err.value)

    state["decoder.head.2.bias"] = torch.zeros(4)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"'decoder.head.2.bias' has shape \(4,\), expected \(3,\)"):
        load_vae(path, config)
