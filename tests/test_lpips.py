"""LPIPS without the lpips/torchvision packages: weights load by their upstream key names, the known identities
hold, and the result equals an independent functional re-computation straight from the state dicts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from hydra_wm.errors import CheckpointError
from hydra_wm.evaluation.lpips import load_lpips, lpips_frames

# torchvision's `features` layouts written out by hand: ("conv", index, stride, padding) | ("relu",) | ("pool", k, s)
ALEX_OPS = [
    ("conv", 0, 4, 2),
    ("relu",),
    ("pool", 3, 2),
    ("conv", 3, 1, 2),
    ("relu",),
    ("pool", 3, 2),
    ("conv", 6, 1, 1),
    ("relu",),
    ("conv", 8, 1, 1),
    ("relu",),
    ("conv", 10, 1, 1),
    ("relu",),
]
ALEX_SHAPES = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]


def vgg_ops_and_shapes():
    ops, shapes, index, channels = [], {}, 0, 3
    for item in VGG_CFG:
        if item == "M":
            ops.append(("pool", 2, 2))
            index += 1
        else:
            shapes[index] = (item, channels, 3)
            ops += [("conv", index, 1, 1), ("relu",)]
            channels, index = item, index + 2
    return ops, shapes


TAP_CHANNELS = {"alex": [64, 192, 384, 256, 256], "vgg": [64, 128, 256, 512, 512]}


def random_weights(kind: str, seed: int = 0) -> tuple[dict, dict]:
    """(torchvision-style backbone state dict with a classifier to ignore, lpips-style heads)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = ALEX_SHAPES if kind == "alex" else vgg_ops_and_shapes()[1]
    backbone = {}
    for index, (c_out, c_in, k) in shapes.items():
        std = (2.0 / (c_in * k * k)) ** 0.5  # He init keeps activations alive through 13 layers
        backbone[f"features.{index}.weight"] = torch.randn(c_out, c_in, k, k, generator=gen) * std
        backbone[f"features.{index}.bias"] = torch.randn(c_out, generator=gen) * 0.01
    backbone["classifier.1.weight"] = torch.randn(10, 4, generator=gen)  # torchvision files carry the classifier
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) for k, c in enumerate(TAP_CHANNELS[kind])}
    return backbone, heads


def reference_lpips(backbone: dict, heads: dict, kind: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS written out directly from the paper's recipe, in float64, layer by layer."""
    ops = ALEX_OPS if kind == "alex" else vgg_ops_and_shapes()[0]
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)

    def taps(image):
        h, out = (image.double() - shift) / scale, []
        for op in ops:
            if op[0] == "conv":
                _, i, stride, pad = op
                h = F.conv2d(
                    h,
                    backbone[f"features.{i}.weight"].double(),
                    backbone[f"features.{i}.bias"].double(),
                    stride=stride,
                    padding=pad,
                )
            elif op[0] == "pool":
                h = F.max_pool2d(h, op[1], op[2])
            else:
                h = h.clamp(min=0)
                out.append(h)
        # keep the relu closing each LPIPS slice: alex: every relu; vgg: relu1_2, 2_2, 3_3, 4_3, 5_3
        return out if kind == "alex" else [out[i] for i in (1, 3, 6, 9, 12)]

    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for k, (a, b) in enumerate(zip(taps(x), taps(y), strict=True)):
        a = a / (torch.sqrt((a * a).sum(1, keepdim=True)) + 1e-10)
        b = b / (torch.sqrt((b * b).sum(1, keepdim=True)) + 1e-10)
        weight = heads[f"lin{k}.model.1.weight"].double().view(1, -1, 1, 1)
        total += ((a - b) ** 2 * weight).sum(1).mean(dim=(1, 2))
    return total


@pytest.fixture(scope="module")
def alex_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lpips_alex")
    backbone, heads = random_weights("alex")
    torch.save(backbone, folder / "alexnet-owt-7be5be79.pth")
    torch.save(heads, folder / "alex.pth")
    return folder, backbone, heads


@pytest.mark.parametrize("kind", ["alex", "vgg"])
def test_lpips_matches_an_independent_recomputation(tmp_path, kind):
    backbone, heads = random_weights(kind, seed=1)
    torch.save(backbone, tmp_path / "backbone.pth")
    save_file(heads, tmp_path / "heads.safetensors")
    model = load_lpips([tmp_path / "backbone.pth", tmp_path / "heads.safetensors"])
    assert model.net.kind == kind
    gen = torch.Generator().manual_seed(2)
    size = 64 if kind == "alex" else 32
    x = torch.rand(2, 3, size, size, generator=gen) * 2 - 1
    y = (x + 0.3 * torch.randn(2, 3, size, size, generator=gen)).clamp(-1, 1)
    expected = reference_lpips(backbone, heads, kind, x, y)
    assert torch.allclose(model(x, y).double(), expected, rtol=1e-4, atol=1e-6)
    assert (expected > 0).all()


def test_lpips_identities(alex_files):
    folder, _, _ = alex_files
    model = load_lpips([folder / "alex.pth", folder / "alexnet-owt-7be5be79.pth"])  # heads first also works
    gen = torch.Generator().manual_seed(3)
    x, y = (torch.rand(3, 3, 64, 64, generator=gen) * 2 - 1 for _ in range(2))
    assert torch.equal(model(x, x), torch.zeros(3))
    assert torch.allclose(model(x, y), model(y, x))
    assert (model(x, y) > 0).all()
    # per frame on [3, T, H, W] videos
    video_x, video_y = x.transpose(0, 1), y.transpose(0, 1)
    assert torch.allclose(lpips_frames(model, video_x, video_y, batch=2), model(x, y).double())


def test_one_file_in_lpips_module_layout_gives_the_same_model(alex_files, tmp_path):
    folder, backbone, heads = alex_files
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}  # lpips.pretrained_networks.alexnet slice of each conv
    combined = {
        f"net.slice{slices[int(k.split('.')[1])]}.{k.removeprefix('features.')}": v
        for k, v in backbone.items()
        if k.startswith("features.")
    }
    combined.update(heads)
    combined["scaling_layer.shift"] = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    torch.save(combined, tmp_path / "lpips_alex_full.pth")
    one = load_lpips(tmp_path / "lpips_alex_full.pth")
    two = load_lpips([folder / "alexnet-owt-7be5be79.pth", folder / "alex.pth"])
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(one(x, y), two(x, y))


def test_missing_or_misshaped_weights_are_refused(alex_files, tmp_path):
    folder, backbone, heads = alex_files
    with pytest.raises(CheckpointError, match="lin0.model.1.weight"):
        load_lpips(folder / "alexnet-owt-7be5be79.pth")  # no heads
    bad = dict(heads, **{"lin2.model.1.weight": torch.rand(1, 7, 1, 1)})
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"lin2.model.1.weight: expected shape \[1, 384, 1, 1\]"):
        load_lpips([folder / "alexnet-owt-7be5be79.pth", tmp_path / "bad.pth"])
    with pytest.raises(CheckpointError, match="not found"):
        load_lpips(tmp_path / "absent.pth")
