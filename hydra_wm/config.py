"""Typed model configurations with named presets (Wan2.1 `wan/configs/*.py` style: short and flat)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ConfigError

ATTENTION_MODES = ("memory", "full", "window")
RETRIEVAL_MODES = ("relevance", "camera")
PREDICTIONS = ("velocity", "sample", "preconditioned")
ATTENTION_BACKENDS = ("gather", "flex")


def int_triple(value, name: str) -> tuple[int, int, int]:
    try:
        out = tuple(int(v) for v in value)
    except TypeError as exc:
        raise ConfigError(f"{name}: expected three integers, got {value!r}") from exc
    if len(out) != 3 or min(out) < 1:
        raise ConfigError(f"{name}: expected three positive integers, got {value!r}")
    return out  # type: ignore[return-value]


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Channels of one head given to the (frame, row, column) RoPE axes (docs/reference.md §1; the authors'
    `precompute_freqs_cis_3d` in `diffsynth/models/wan_video_dit.py`).

    Temporal gets ``d - 2*(d//3)``, each spatial axis ``d//3``: 44/42/42 for d = 128, 8/8/8 for d = 24.
    Every part must be even because RoPE rotates channel pairs.
    """
    spatial = head_dim // 3
    temporal = head_dim - 2 * spatial
    if head_dim < 6 or spatial % 2 or temporal % 2:
        raise ConfigError(
            f"head_dim {head_dim} cannot be split into even RoPE parts "
            f"(temporal {temporal}, spatial {spatial}); choose e.g. 24, 64 or 128"
        )
    return temporal, spatial, spatial


def window_starts(num_frames: int, window: int, device: torch.device | None = None) -> Tensor:
    """(F,) first frame of each frame's local window (`DiTConfig.window` frames), centred and clamped to the clip.

    The window `memory` and `window` attention give every query frame (`models.memory`), and what Flatland's
    "revisited beyond the window" metric measures against (`flatland.views`): defined once, here.
    """
    window = min(window, num_frames)
    frames = torch.arange(num_frames, device=device)
    return (frames - (window - 1) // 2).clamp(0, num_frames - window)


@dataclass
class DiTConfig:
    """Wan2.1 DiT with HyDRA's hybrid-memory self-attention."""

    dim: int = 1536
    """Transformer width D."""
    in_dim: int = 16
    """Latent channels C of the input."""
    out_dim: int = 16
    """Latent channels of the prediction."""
    ffn_dim: int = 8960
    """Hidden width of each block's feed-forward network."""
    freq_dim: int = 256
    """Channels of the sinusoidal timestep embedding."""
    text_dim: int = 4096
    """Width of the text-encoder embeddings (umT5-XXL: 4096)."""
    num_heads: int = 12
    """Attention heads N; head dim d = dim / num_heads."""
    num_layers: int = 30
    """Number of DiT blocks."""
    patch_size: tuple[int, int, int] = (1, 2, 2)
    """Patchify kernel = stride over (frames, rows, columns)."""
    eps: float = 1e-6
    """Epsilon of LayerNorm and RMSNorm."""
    rope_theta: float = 10000.0
    """RoPE base, per axis."""
    attention: str = "memory"
    """Self-attention mode: `memory` (HyDRA retrieval), `full` (dense, ReCamMaster baseline), `window` (local only)."""
    window: int = 5
    """Local window: full-resolution frames every query frame attends to (centred, clamped at the ends)."""
    top_k: int = 10
    """Memory frames retrieved per query frame (clamped when fewer are eligible)."""
    retrieval: str = "relevance"
    """How `memory` mode ranks memory frames: `relevance` (HyDRA: <mean q, mean k_mem>, docs/reference.md §1.1) or
    `camera` (the paper's camera-FOV retrieval ablation: the cosine between the frames' viewing directions,
    from the relative cameras; the same choice in every block, no learned scores)."""
    tokenizer_kernel: tuple[int, int, int] = (2, 2, 2)
    """Memory tokenizer Conv3d kernel = stride over (frames, rows, columns)."""
    attention_logit_scale: float = 1.0
    """Multiplies every self-attention logit (q·k/sqrt(d), after QK-norm; retrieval ranks the same): 1 is the
    reference; below 1 softens attention, an inference-time calibration measured on the built-in Flatland models
    (docs/deviations.md). Equivalent to scaling the QK-norm gains of q by this factor."""
    attention_chunk_frames: int = 4
    """Query frames per windowed/memory attention call at most: bounds the memory of the gathered keys and values
    (0: all frames in one call); large inputs gather fewer frames per call, each call's keys at most
    `models.memory.CHUNK_BYTES`. The result does not depend on it."""
    attention_backend: str = "gather"
    """How `memory` and `window` attention run (the result is the same to rounding): `gather` copies each chunk of
    query frames' keys and values (window tokens, then retrieved memory tokens) and calls
    `scaled_dot_product_attention` (the fastest on CPUs); `flex` runs one torch FlexAttention call with a block mask
    over [tokens ; memory tokens], copying nothing (compiled on CUDA, where the gathers cost memory bandwidth;
    eager and slow elsewhere). `models.memory.flex_memory_attention`."""
    camera_dim: int = 12
    """Length of one relative camera vector (top 3x4 of the pose, row-major)."""
    prediction: str = "velocity"
    """What the head outputs. `velocity`: the flow-matching velocity noise - x0 (Wan2.1, the reference).
    `sample`: the clean latents x0, turned into the velocity (x_t - x0) / max(sigma, `SAMPLE_SIGMA_MIN`) inside
    `forward`, so training (velocity loss) and sampling are unchanged ("x-prediction with a v-loss", Li & He 2025,
    "Back to Basics: Let Denoising Generative Models Denoise"). A deliberate deviation for tiny models: a small
    head cannot pass the noise through exactly, and with `velocity` what it misses stays in the samples as
    grain; with `sample` its errors are smooth. `preconditioned`: the clean latents as `c_skip * x_t + c_out * F`
    with F the head's output (EDM's preconditioning, Karras et al. 2022, for x_t = (1 - sigma) x0 + sigma noise and
    unit data variance; `models.dit.preconditioning`): F is the clean sample at high noise, as with `sample`, and a
    scaled correction of x_t at low noise, where `sample` must rebuild the whole input through the network."""

    aligned_view_input: bool = False
    """Give every target frame the context frame whose camera looks most nearly the same way, token for token:
    its latents, patch-embedded by `view_embedding` (initialised as the patch embedding without its bias, so the
    target tokens start as the embedding of their latents plus the view), are added to the target frame's tokens
    before the first block. The frame is chosen by the cosine of the viewing
    directions (the paper's camera-FOV retrieval, top 1; of equally aligned frames the latest). A deliberate
    deviation, off for the real model: it suits worlds whose revisited views return at the same screen positions
    (Flatland's `glance` camera); translation or a rotated view would need a warp that this does not do. Measured
    on the built-in models (docs/deviations.md)."""

    aligned_view_gate: bool = False
    """Blend each target frame's clean-sample prediction with the same aligned context frame, per latent value:
    x0 <- x0 + g * (view - x0) with g = sigmoid(`view_gate`(the head's input features)), so the model can copy a
    returning view exactly where it judges it right and paint the rest (moved subjects) itself. The gate starts
    nearly shut (zero weights, bias `models.dit.VIEW_GATE_BIAS`: g = 0.018). Needs a clean-sample prediction
    (`sample` or `preconditioned`). The same deviation as `aligned_view_input`, off for the real model."""

    rope_yaw_columns: float = 0.0
    """Camera-aware RoPE columns: every frame's column positions are shifted by its camera's yaw (radians, about the
    vertical axis of the relative cameras' reference frame, `models.dit.camera_yaw`) times this many token columns
    per radian, so a token's column position is where it looks in the world, not on the screen: a subject seen
    under one heading is found under another at the same relative position, and the view a turn brings back sits
    where it was. 0: off,
    the reference's screen positions. Right for pure turns about the vertical axis on a cylindrical projection
    (Flatland: panorama pixels / 2 pi / pixels per token = 5.09 for `small-glance` tokens of 4 pixels); a pinhole
    camera would use its focal length in tokens (exact only near the centre). A relative position encoding from
    the cameras, in the spirit of GTA (Miyato et al. 2024) and PRoPE (Li et al. 2025), restricted to yaw. A
    deliberate deviation, off for the real model (docs/deviations.md)."""

    rope_head_velocity: tuple[float, ...] = ()
    """Motion-sheared RoPE columns ("Galilean" heads): head h's column positions move by -v_h token columns per
    frame, so its relative positions follow something walking v_h columns a frame: a query at (frame t, column c)
    lines up with a key at (t', c - v_h (t - t')). Axial RoPE scores frames and columns separately (a sum of a
    function of the frame offset and one of the column offset); it cannot favour the diagonal a walking subject
    traces, which is what finding a subject again after it was out of view needs. One value per head (every block
    alike) or one per block and head (block-major); 0 leaves a head as the reference has it. Empty: off. With
    `rope_yaw_columns` the shear is on top of the camera's yaw shift, i.e. in world columns. A deliberate
    deviation, off for the real model (docs/deviations.md)."""

    rope_yaw_heads: tuple[float, ...] = ()
    """Which heads `rope_yaw_columns` shifts, as a weight per head (every block alike) or per block and head
    (block-major): 1 world columns, 0 the screen's. Empty: every head (what `rope_yaw_columns` alone does). Lets
    some heads keep screen positions (e.g. those that retrieve and copy a returning view) while others see the
    world. Part of the same deviation."""

    def __post_init__(self) -> None:
        self.patch_size = int_triple(self.patch_size, "patch_size")
        self.tokenizer_kernel = int_triple(self.tokenizer_kernel, "tokenizer_kernel")
        for name in ("dim", "in_dim", "out_dim", "ffn_dim", "freq_dim", "text_dim", "num_heads", "num_layers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        if self.dim % self.num_heads:
            raise ConfigError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.freq_dim % 2:
            raise ConfigError(f"freq_dim must be even, got {self.freq_dim}")
        if self.attention not in ATTENTION_MODES:
            raise ConfigError(f"attention: expected one of {ATTENTION_MODES}, got {self.attention!r}")
        if self.window < 1:
            raise ConfigError(f"window: expected >= 1 frames, got {self.window}")
        if self.attention_chunk_frames < 0:
            raise ConfigError(f"attention_chunk_frames: expected >= 0, got {self.attention_chunk_frames}")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ConfigError(
                f"attention_backend: expected one of {ATTENTION_BACKENDS}, got {self.attention_backend!r}"
            )
        if not self.attention_logit_scale > 0:
            raise ConfigError(f"attention_logit_scale: expected > 0, got {self.attention_logit_scale}")
        if self.retrieval not in RETRIEVAL_MODES:
            raise ConfigError(f"retrieval: expected one of {RETRIEVAL_MODES}, got {self.retrieval!r}")
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"prediction: expected one of {PREDICTIONS}, got {self.prediction!r}")
        if self.aligned_view_gate and self.prediction == "velocity":
            raise ConfigError("aligned_view_gate: needs prediction 'sample' or 'preconditioned' (it blends x0)")
        if self.top_k < 0:
            raise ConfigError(f"top_k: expected >= 0, got {self.top_k}")
        if not math.isfinite(self.rope_yaw_columns):
            raise ConfigError(f"rope_yaw_columns: expected a finite number, got {self.rope_yaw_columns}")
        for name in ("rope_head_velocity", "rope_yaw_heads"):
            values = tuple(float(v) for v in getattr(self, name))
            setattr(self, name, values)
            if values and len(values) not in (self.num_heads, self.num_heads * self.num_layers):
                raise ConfigError(
                    f"{name}: expected {self.num_heads} values (one per head) or {self.num_heads * self.num_layers}"
                    f" (one per block and head), got {len(values)}"
                )
            if not all(math.isfinite(v) for v in values):
                raise ConfigError(f"{name}: expected finite numbers, got {values}")
        rope_split(self.head_dim)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def head_columns(self) -> list[tuple[tuple[float, ...], tuple[float, ...]]] | None:
        """Per block, (yaw weight, velocity) of each head's RoPE columns (`rope_yaw_heads`, `rope_head_velocity`);
        None when neither is set (every head alike: the shared tables)."""
        if not self.rope_head_velocity and not self.rope_yaw_heads:
            return None
        n, layers = self.num_heads, self.num_layers

        def per_block(values: tuple[float, ...], default: float) -> list[tuple[float, ...]]:
            values = values or (default,) * n
            values = values * layers if len(values) == n else values
            return [values[i * n : (i + 1) * n] for i in range(layers)]

        return list(zip(per_block(self.rope_yaw_heads, 1.0), per_block(self.rope_head_velocity, 0.0), strict=True))

    def replace(self, **changes) -> DiTConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


DIT_PRESETS: dict[str, DiTConfig] = {
    # Wan2.1-T2V-1.3B (wan/configs/wan_t2v_1_3B.py) plus HyDRA's memory settings.
    "wan2.1-t2v-1.3b": DiTConfig(),
    # Tiny model every unit test uses: head dim 24 (RoPE split 8/8/8), 2 blocks.
    "debug": DiTConfig(dim=48, in_dim=4, out_dim=4, ffn_dim=64, freq_dim=32, text_dim=16, num_heads=2, num_layers=2),
    # The built-in Flatland model (`flatland/weights/`, docs/flatland.md) on `models.codecs.PixelCodec(2)` latents (12
    # channels, one latent frame per video frame) and a null text embedding: 32x32 frames -> 16x16 latents -> 8x8
    # tokens per frame. Head dim 48 (RoPE 16/16/16): 64 does not split into even RoPE parts here (`rope_split`),
    # and dim 96 stepped ~1.5x faster than dim 128 (1 head of 128 or 4 of 32) at batch 8 on 2 CPU cores.
    # ~0.93 M parameters.
    "flatland-tiny": DiTConfig(
        dim=96,
        in_dim=12,
        out_dim=12,
        ffn_dim=256,
        freq_dim=64,
        text_dim=8,
        num_heads=2,
        num_layers=4,
        patch_size=(1, 2, 2),
        window=5,
        top_k=10,
        tokenizer_kernel=(2, 2, 2),
    ),
}


def dit_config(name: str, **overrides) -> DiTConfig:
    """A preset by name, with optional field overrides."""
    if name not in DIT_PRESETS:
        raise ConfigError(f"unknown DiT preset {name!r}; known: {', '.join(sorted(DIT_PRESETS))}")
    return DIT_PRESETS[name].replace(**overrides)
