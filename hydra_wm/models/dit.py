"""The Wan2.1 DiT with HyDRA's hybrid memory, as a pure single-device `nn.Module`.

Layer names follow the original Wan2.1 checkpoint (`patch_embedding`, `blocks.i.self_attn.q`, ...) plus HyDRA's
per-block `self_attn.tokenizer.conv`, `cam_encoder_con`, `cam_encoder_tgt` and `projector`, so that both the
base Wan2.1 file and the released `hydra.ckpt` load one-to-one (see `loading.py`). No diffusion logic here:
the sampler and the training loop call `HydraDiT.forward`.

Dimension names: B batch, C latent channels, F frames (token frames = latent frames / patch_t), H, W token
grid, L = F*H*W tokens, D width, N heads, d = D/N head dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..config import DiTConfig, rope_split
from ..errors import InputError
from .attention import AttentionHook, attention, dense_attention
from .memory import (
    VIEW_DIRECTION,
    Retrieval,
    aligned_view_latents,
    memory_eligibility,
    relevance_scores,
    select_memory,
    windowed_memory_attention,
)
from .memory import camera_scores as retrieval_camera_scores  # (the forward's local is `camera_scores`)

TIMESTEP_SCALE = 1000.0
"""The DiT's timestep is 1000 * sigma (Wan2.1's convention, `flow.FlowMatchSchedule.num_train_timesteps`)."""
VIEW_GATE_BIAS = -4.0
"""`DiTConfig.aligned_view_gate`'s initial gate logit: sigmoid(-4) = 0.018, the prediction nearly the model's own."""
SAMPLE_SIGMA_MIN = 0.05
"""`prediction="sample"`: the velocity divides by max(sigma, this), bounding the loss weight at low noise (the
value of Li & He's JiT)."""


def preconditioning(sigma: Tensor) -> tuple[Tensor, Tensor]:
    """`prediction="preconditioned"`: (c_skip, c_out) with x0 = c_skip * x_t + c_out * F.

    For x_t = (1 - sigma) x0 + sigma n with unit-variance data and noise, c_skip * x_t is the best linear estimate
    of x0 from x_t and c_out the standard deviation of what it misses (EDM, Karras et al. 2022, Eq. 7 with this
    schedule): c_skip -> 1, c_out -> sigma as sigma -> 0 (the input passes through, F is a small correction);
    c_skip -> 0, c_out -> 1 as sigma -> 1 (F is the clean sample, as with `sample`)."""
    variance = (1 - sigma) ** 2 + sigma**2
    return (1 - sigma) / variance, sigma / variance.sqrt()


def sinusoidal_embedding(timestep: Tensor, dim: int) -> Tensor:
    """(B,) -> (B, dim) float64: cosine half first, then sine; frequencies 10000^(-i/(dim/2)).

    Wan2.1 `wan/modules/model.py::sinusoidal_embedding_1d`; computed in float64 like the reference.
    """
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=timestep.device) / half)
    angles = torch.outer(timestep.to(torch.float64), freqs)  # (B, dim/2)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def reuse_temporaries() -> bool:
    """True when autograd records nothing, so that an op may write its result over a temporary it alone holds.

    Inference does so (bit for bit the same results): on the CPU every fresh full-size tensor is page-faulted in
    anew (glibc maps large blocks and unmaps them when freed), which costs about as much as an elementwise op.
    Tensors a caller passed in are never overwritten."""
    return not torch.is_grad_enabled()


class RMSNorm(nn.Module):
    """RMSNorm over the full width, computed in float32, then times the weight (Wan2.1 WanRMSNorm)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            if reuse_temporaries():  # the same products as F.rms_norm with the weight, one temporary fewer
                return F.rms_norm(x, (x.shape[-1],), None, self.eps).mul_(self.weight)
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        out = F.rms_norm(x.float(), (x.shape[-1],), None, self.eps).to(x.dtype)
        return out.mul_(self.weight) if reuse_temporaries() and out.dtype == self.weight.dtype else out * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (Wan2.1 WanLayerNorm), returned in the input dtype."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


def modulate(x: Tensor, shift: Tensor, scale: Tensor, *, overwrite: bool = False) -> Tensor:
    """x * (1 + scale) + shift, in one pass (addcmul allocates only the output; none with `overwrite`, which
    writes the result over x: for a temporary x when `reuse_temporaries()`)."""
    return torch.addcmul(shift, x, 1 + scale, out=x if overwrite else None)


class Rope3D:
    """3-D rotary position tables for one head: channels split over (frame, row, column).

    Positions may be fractional (memory tokens sit between the frames they summarise). Tables are computed
    per forward from the positions: a few hundred KB, cheaper than any cache and never stale.
    """

    def __init__(self, head_dim: int, theta: float):
        self.parts = rope_split(head_dim)
        self.theta = theta

    def angles(self, frame: Tensor, row: Tensor, col: Tensor) -> Tensor:
        """Positions (L,) each -> rotation angles (L, d/2), float64."""
        out = []
        for pos, part in zip((frame, row, col), self.parts, strict=True):
            inv_freq = self.theta ** (-torch.arange(0, part, 2, dtype=torch.float64, device=pos.device) / part)
            out.append(torch.outer(pos.to(torch.float64), inv_freq))
        return torch.cat(out, dim=1)

    def grid(
        self,
        frames: int,
        rows: int,
        cols: int,
        strides=(1, 1, 1),
        offsets=(0.0, 0.0, 0.0),
        device=None,
        column_shift: Tensor | None = None,
    ):
        """(L, 1, d/2) complex64 rotations for a frame-major grid at positions offset + stride * index.

        Each axis's rotations are computed once (F + H + W rows) and broadcast over the grid: the same float64
        angles and the same rounding to complex64 as computing them per token, at a fraction of the cost.
        `column_shift` (B, frames): every column position of a frame moved by its shift (`DiTConfig.rope_yaw_columns`);
        the table is then (B, L, 1, d/2). (B, frames, N): a shift per head as well (`DiTConfig.head_columns`); the
        table is then (B, L, N, d/2)."""
        axes = []
        for axis, (size, stride, offset, part) in enumerate(
            zip((frames, rows, cols), strides, offsets, self.parts, strict=True)
        ):
            pos = torch.arange(size, device=device, dtype=torch.float64) * stride + offset
            if axis == 2 and column_shift is not None:  # (B, F, [N,] W): each frame's columns at their own positions
                pos = pos + column_shift.to(device, torch.float64)[..., None]
            inv_freq = self.theta ** (-torch.arange(0, part, 2, dtype=torch.float64, device=device) / part)
            angles = pos[..., None] * inv_freq  # (..., size, part/2)
            axes.append(torch.polar(torch.ones_like(angles), angles).to(torch.complex64))
        f, r, c = axes
        if column_shift is None:
            c = c[None, None, None]  # (1, 1, 1, W, part/2)
        elif column_shift.ndim == 2:
            c = c[:, :, None]  # (B, F, 1, W, part/2)
        heads = c.shape[2]
        shape = (c.shape[0], frames, rows, cols, heads)
        table = torch.cat(
            [
                f[None, :, None, None, None, :].expand(*shape, -1),
                r[None, None, :, None, None, :].expand(*shape, -1),
                c.transpose(2, 3)[:, :, None].expand(*shape, -1),  # (B, F, 1, W, N, part/2)
            ],
            dim=-1,
        ).reshape(shape[0], frames * rows * cols, heads, -1)
        return table if column_shift is not None else table[0]


def camera_yaw(cameras: Tensor) -> Tensor:
    """(B, F) float64 yaw in radians of relative cameras (B, F, 12) (top 3x4 of the camera-to-world pose, columns
    right, down, forward: `data/cameras.py`): the azimuth of the viewing direction about the vertical axis of the
    frame the relative cameras are expressed in, positive turning right, unwrapped along the frames (a turn past 180
    degrees keeps counting). RoPE sees only differences, so the reference frame's own yaw does not matter."""
    forward = cameras[..., list(VIEW_DIRECTION)].double()  # (B, F, 3) in the reference frame's axes
    yaw = torch.atan2(forward[..., 0], forward[..., 2])
    step = torch.diff(yaw, dim=1)
    step = torch.remainder(step + math.pi, 2 * math.pi) - math.pi
    return torch.cat([yaw[:, :1], yaw[:, :1] + torch.cumsum(step, dim=1)], dim=1)


def apply_rope(x: Tensor, rotation: Tensor, *, overwrite: bool = False) -> Tensor:
    """Rotate adjacent channel pairs (2i, 2i+1) as complex numbers (float32 maths). x: (B, L, N, d).

    overwrite: x is a temporary (`reuse_temporaries()`): the rotation is written over the float32 pairs, x itself
    when x is contiguous float32, else the float32 copy just made of it."""
    pairs = torch.view_as_complex(rearrange(x.float(), "b l n (c two) -> b l n c two", two=2).contiguous())
    rotated = torch.mul(pairs, rotation, out=pairs if overwrite else None)
    return rearrange(torch.view_as_real(rotated), "b l n c two -> b l n (c two)").to(x.dtype)


def rotate_keys(k: Tensor, tables: tuple[Tensor, ...]) -> Tensor:
    """RoPE over keys (B, L, N, d) made of consecutive parts (tokens, then memory tokens), each with its table.

    Inference on contiguous float32 keys of one batch item rotates each part in place (each is a contiguous
    slice): no joined table and no copy. Otherwise the tables are joined and the keys rotated at once."""
    if reuse_temporaries() and k.dtype == torch.float32 and k.is_contiguous() and k.shape[0] == 1:
        first = 0
        for table in tables:  # (L, 1, d/2), or (B, L, 1, d/2) with per-item column shifts
            apply_rope(k[:, first : first + table.shape[-3]], table, overwrite=True)  # in place
            first += table.shape[-3]
        return k
    joined = tables[0] if len(tables) == 1 else torch.cat(tables, dim=-3)
    return apply_rope(k, joined, overwrite=reuse_temporaries())


class MemoryTokenizer(nn.Module):
    """Compresses (B, D, F, H, W) features into memory tokens with one strided Conv3d (kernel = stride)."""

    def __init__(self, dim: int, kernel: tuple[int, int, int]):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class SelfAttention(nn.Module):
    """Wan2.1 self-attention with HyDRA's three modes: `memory`, `full` and `window`."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim = cfg.dim
        self.cfg = cfg
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, cfg.eps)
        self.norm_k = RMSNorm(dim, cfg.eps)
        self.tokenizer = MemoryTokenizer(dim, cfg.tokenizer_kernel)

    def forward(
        self,
        h: Tensor,
        grid: tuple[int, int, int],
        rope: dict,
        camera_scores: Tensor | None = None,
        attention_hook: AttentionHook | None = None,
    ) -> tuple[Tensor, Retrieval | None]:
        """h: (B, L, D) modulated input -> ((B, L, D), retrieval or None).

        camera_scores: (B, F, Fm) memory-frame scores from the cameras (`retrieval="camera"`); None: HyDRA's
        learned relevance. attention_hook: shown every attention call (`models.attention`)."""
        cfg = self.cfg
        frames = grid[0]
        heads = lambda t: rearrange(t, "b l (n d) -> b l n d", n=cfg.num_heads)  # (B, L, N, d)
        q = self.norm_q(self.q(h))
        retrieval = None
        if cfg.attention == "memory" and cfg.top_k > 0:
            # Memory tokens go through the block's own key/value projections together with the full-resolution
            # tokens: k and v come out as [tokens ; memory tokens], the layout the attention gathers from.
            memory, mem_frames = self._memory_tokens(h, grid)  # (B, Lm, D)
            kv_input = torch.cat([h, memory], dim=1)
            del memory
            k = self.norm_k(self.k(kv_input))
            v = heads(self.v(kv_input))
            del kv_input
            retrieval = self._retrieve(q, k[:, h.shape[1] :], frames, mem_frames, camera_scores)  # before RoPE
            tables = (rope["tokens"], rope["memory"])
        else:
            k = self.norm_k(self.k(h))
            v = heads(self.v(h))
            tables = (rope["tokens"],)
        if cfg.attention_logit_scale != 1.0:  # after retrieval, which reads q unscaled (its ranking would not change)
            q = q * cfg.attention_logit_scale
        # Rebinding q and k frees the un-rotated copies early (the full-resolution activations dominate memory).
        # (The retrieval above has read q and the memory keys before RoPE; both may now be rotated in place.)
        q = apply_rope(heads(q), rope["tokens"], overwrite=reuse_temporaries())
        k = rotate_keys(heads(k), tables)
        if cfg.attention == "full":
            out = dense_attention(q, k, v, hook=attention_hook)
        else:
            out = windowed_memory_attention(
                q,
                k,
                v,
                frames,
                cfg.window,
                retrieval=retrieval,
                chunk_frames=cfg.attention_chunk_frames,
                hook=attention_hook,
                backend=cfg.attention_backend,
            )
        return self.o(rearrange(out, "b l n d -> b l (n d)")), retrieval

    def _memory_tokens(self, h: Tensor, grid: tuple[int, int, int]) -> tuple[Tensor, int]:
        """The tokenizer's memory tokens (B, Lm, D), frame-major, and their number of frames Fm."""
        frames, rows, _ = grid
        memory = self.tokenizer(rearrange(h, "b (f h w) d -> b d f h w", f=frames, h=rows))  # (B, D, Fm, Hm, Wm)
        return rearrange(memory, "b d f h w -> b (f h w) d"), memory.shape[2]

    def _retrieve(
        self, q: Tensor, k_mem: Tensor, frames: int, mem_frames: int, camera_scores: Tensor | None = None
    ) -> Retrieval:
        """The top-k memory frames per query frame, from the queries and memory keys before RoPE (B, L|Lm, D)."""
        eligible = memory_eligibility(frames, mem_frames, self.cfg.window, self.cfg.tokenizer_kernel[0], q.device)
        if camera_scores is not None:
            scores = camera_scores.masked_fill(~eligible, float("-inf"))
        else:
            scores = relevance_scores(
                rearrange(q, "b (f t) d -> b f t d", f=frames),
                rearrange(k_mem, "b (f t) d -> b f t d", f=mem_frames),
                eligible,
            )
        return select_memory(scores, self.cfg.top_k)


class CrossAttention(nn.Module):
    """Attention from video tokens to text embeddings (no RoPE, no mask: padded text rows are zero)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim = cfg.dim
        self.num_heads = cfg.num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, cfg.eps)
        self.norm_k = RMSNorm(dim, cfg.eps)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """x: (B, L, D), context: (B, Lt, D) -> (B, L, D)."""
        heads = lambda t: rearrange(t, "b l (n d) -> b n l d", n=self.num_heads)
        q = heads(self.norm_q(self.q(x)))
        k = heads(self.norm_k(self.k(context)))
        out = attention(q, k, heads(self.v(context)))  # (B, N, L, d)
        return self.o(rearrange(out, "b n l d -> b l (n d)"))


class DiTBlock(nn.Module):
    """One Wan2.1 block with HyDRA's camera encoders and output projector."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim = cfg.dim
        self.norm1 = LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(cfg)
        self.norm3 = LayerNorm(dim, eps=cfg.eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(cfg)
        self.norm2 = LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self.cam_encoder_con = nn.Linear(cfg.camera_dim, dim)
        self.cam_encoder_tgt = nn.Linear(cfg.camera_dim, dim)
        self.projector = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        t_mod: Tensor,
        cameras: tuple[Tensor, Tensor],
        grid,
        rope: dict,
        camera_scores: Tensor | None = None,
        attention_hook: AttentionHook | None = None,
    ) -> tuple[Tensor, Retrieval | None]:
        """x: (B, L, D), context: (B, Lt, D), t_mod: (B, 6, D), cameras: (B, Fc, 12), (B, Ft, 12);
        camera_scores, attention_hook: see `SelfAttention.forward`."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (self.modulation + t_mod).chunk(6, dim=1)
        reuse = reuse_temporaries()  # results over temporaries; never over x, which the caller may hold
        h = modulate(self.norm1(x), shift_msa, scale_msa, overwrite=reuse)
        # Camera embeddings join the attention input only (not the residual stream), one per frame.
        cam_context, cam_target = cameras
        camera = torch.cat([self.cam_encoder_con(cam_context), self.cam_encoder_tgt(cam_target)], dim=1)  # (B,F,D)
        frames = rearrange(h, "b (f t) d -> b f t d", f=grid[0])
        frames = frames.add_(camera[:, :, None, :]) if reuse else frames + camera[:, :, None, :]
        h = rearrange(frames, "b f t d -> b (f t) d")  # (B, L, D)
        del frames
        attn, retrieval = self.self_attn(h, grid, rope, camera_scores, attention_hook)
        del h  # free the attention input before the residual updates (full-resolution activations dominate)
        projected = self.projector(attn)
        del attn
        x = torch.addcmul(x, gate_msa, projected, out=projected if reuse else None)  # x + gate_msa * projector(attn)
        del projected
        cross = self.cross_attn(self.norm3(x), context)
        x = cross.add_(x) if reuse else x + cross  # no gate (Wan2.1); the same sum either way
        del cross
        ffn = self.ffn(modulate(self.norm2(x), shift_mlp, scale_mlp, overwrite=reuse))
        x = torch.addcmul(x, gate_mlp, ffn, out=ffn if reuse else None)
        return x, retrieval


class Head(nn.Module):
    """Output head: modulated LayerNorm and a Linear to out_dim x patch values per token."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def features(self, x: Tensor, t: Tensor) -> Tensor:
        """The modulated, normalised input of the final Linear: (B, L, D)."""
        shift, scale = (self.modulation + t[:, None, :]).chunk(2, dim=1)  # (B, 1, D) each; works for B > 1
        return modulate(self.norm(x), shift, scale, overwrite=reuse_temporaries())

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """x: (B, L, D), t: (B, D) time embedding (not t_mod) -> (B, L, out_dim * prod(patch))."""
        return self.head(self.features(x, t))


class HydraDiT(nn.Module):
    """Wan2.1 text-to-video DiT with HyDRA hybrid memory and camera conditioning."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        if cfg.aligned_view_input:  # `DiTConfig.aligned_view_input`: a deviation, absent from the real model
            self.view_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        if cfg.aligned_view_gate:  # `DiTConfig.aligned_view_gate`: likewise
            self.view_gate = nn.Linear(dim, cfg.out_dim * math.prod(cfg.patch_size))
        self.rope = Rope3D(cfg.head_dim, cfg.rope_theta)

    # ---------------------------------------------------------------- initialisation
    def init_weights(self) -> None:
        """Wan2.1's initialisation for the base model, then HyDRA's for its own modules."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        nn.init.zeros_(self.patch_embedding.bias)
        for seq in (self.text_embedding, self.time_embedding):
            for module in seq.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(self.head.head.weight)
        for module in [*self.blocks, self.head]:
            nn.init.normal_(module.modulation, std=self.cfg.dim**-0.5)
        self.init_hydra_modules()
        if self.cfg.aligned_view_input:
            self.init_view_embedding()
        if self.cfg.aligned_view_gate:
            self.init_view_gate()

    def init_view_gate(self) -> None:
        """`view_gate` nearly shut everywhere: zero weights, bias `VIEW_GATE_BIAS`."""
        with torch.no_grad():
            self.view_gate.weight.zero_()
            self.view_gate.bias.fill_(VIEW_GATE_BIAS)

    def init_view_embedding(self) -> None:
        """`view_embedding` as a copy of the patch embedding without its bias: a target frame's tokens then start
        as the embedding of its latents plus the aligned view's. Not zero (the "starts as the model without it"
        init of ControlNet-style additions): from zero the built-in memory model's view embedding had grown to a
        norm of 0.36 after 200 fine-tuning steps, against 8.5 for the patch embedding (model card)."""
        with torch.no_grad():
            self.view_embedding.weight.copy_(self.patch_embedding.weight)
            self.view_embedding.bias.zero_()

    def init_hydra_modules(self, generator: torch.Generator | None = None) -> None:
        """HyDRA's additions as the reference initialises them on top of a base Wan2.1 model: camera encoders
        zero, projector identity with zero bias, tokenizer PyTorch's default Conv3d init (kaiming-uniform,
        drawn from `generator` when given so that loading a base checkpoint is reproducible).
        With this, an untrained HyDRA model is the base model plus the retrieval attention pattern."""
        with torch.no_grad():
            for block in self.blocks:
                for enc in (block.cam_encoder_con, block.cam_encoder_tgt):
                    enc.weight.zero_()
                    enc.bias.zero_()
                block.projector.weight.copy_(torch.eye(self.cfg.dim))
                block.projector.bias.zero_()
                conv = block.self_attn.tokenizer.conv
                fan_in = conv.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)  # = kaiming_uniform(a=sqrt(5)) and the bias rule of nn.Conv3d
                conv.weight.copy_(
                    torch.empty_like(conv.weight, device="cpu").uniform_(-bound, bound, generator=generator)
                )
                conv.bias.copy_(torch.empty_like(conv.bias, device="cpu").uniform_(-bound, bound, generator=generator))

    # ---------------------------------------------------------------- forward
    def _check_inputs(self, latents, cam_context, cam_target, num_context_frames) -> tuple[int, int, int, int]:
        cfg = self.cfg
        if latents.ndim != 5 or latents.shape[1] != cfg.in_dim:
            raise InputError(f"latents: expected (B, {cfg.in_dim}, F, H, W), got {tuple(latents.shape)}")
        _, _, frames, height, width = latents.shape
        pt, ph, pw = cfg.patch_size
        if frames % pt or height % ph or width % pw:
            raise InputError(
                f"latents: frames/height/width {frames, height, width} not divisible by patch {cfg.patch_size}"
            )
        grid = (frames // pt, height // ph, width // pw)
        # The context length is the number of context cameras (one per token frame); a given count must agree.
        n_context = cam_context.shape[1] if cam_context.ndim == 3 else 0
        if num_context_frames is not None and num_context_frames // pt != n_context:
            raise InputError(
                f"num_context_frames: {num_context_frames} latent frames, but cam_context has {n_context} rows "
                f"(one per context frame)"
            )
        if not 0 < n_context < grid[0]:
            raise InputError(f"cam_context: expected between 1 and {grid[0] - 1} context frames, got {n_context}")
        for name, cam, rows in (
            ("cam_context", cam_context, n_context),
            ("cam_target", cam_target, grid[0] - n_context),
        ):
            if cam.ndim != 3 or cam.shape[1] != rows or cam.shape[2] != cfg.camera_dim:
                raise InputError(
                    f"{name}: expected (B, {rows}, {cfg.camera_dim}), one row per frame, got {tuple(cam.shape)}"
                )
        return (*grid, n_context)

    def rope_tables(self, grid: tuple[int, int, int], device, cameras: Tensor | None = None) -> dict:
        """RoPE (cos, sin) for the full-resolution tokens (integer positions; target frames continue after
        the context) and for the memory tokens (frame kt*j + (kt-1)/2, row kh*r, column kw*c: docs/reference.md
        §1.1; the authors' `get_compressed_freqs_cis_3d`). With `DiTConfig.rope_yaw_columns` and `cameras`
        (B, F, 12), every frame's columns are shifted by its yaw (`camera_yaw`) times that factor; a memory token
        by the mean shift of the frames it summarises."""
        return self._rope_grids(grid, device, self._yaw_shift(cameras))

    def _yaw_shift(self, cameras: Tensor | None) -> Tensor | None:
        """(B, F) column shift in token columns of `DiTConfig.rope_yaw_columns`, or None when off."""
        if not self.cfg.rope_yaw_columns or cameras is None:
            return None
        return self.cfg.rope_yaw_columns * camera_yaw(cameras)

    def rope_tables_per_block(self, grid: tuple[int, int, int], device, cameras: Tensor | None = None) -> list[dict]:
        """`rope_tables` for each block: the shared tables, or with `DiTConfig.head_columns` each block's own, a
        column shift per head: yaw weight x the camera's yaw shift - velocity x frame position (blocks with the
        same heads share theirs)."""
        columns = self.cfg.head_columns()
        if columns is None:
            return [self.rope_tables(grid, device, cameras)] * self.cfg.num_layers
        yaw = self._yaw_shift(cameras)
        frame_pos = torch.arange(grid[0], device=device, dtype=torch.float64)  # the tokens' RoPE frame positions
        tables: dict[tuple, dict] = {}
        for weights, velocity in columns:
            if (weights, velocity) not in tables:
                w = torch.tensor(weights, dtype=torch.float64, device=device)
                v = torch.tensor(velocity, dtype=torch.float64, device=device)
                shift = -frame_pos[None, :, None] * v  # (1, F, N)
                if yaw is not None:
                    shift = shift + yaw[:, :, None] * w
                tables[weights, velocity] = self._rope_grids(grid, device, shift)
        return [tables[key] for key in columns]

    def _rope_grids(self, grid: tuple[int, int, int], device, shift: Tensor | None) -> dict:
        """The token and memory-token tables for column shifts (B, F[, N]) or None."""
        kt, kh, kw = self.cfg.tokenizer_kernel
        frames, rows, cols = grid
        # A memory token sits at the mean position of the frames it summarises (its frame offset below), so it
        # takes their mean shift.
        memory_shift = None if shift is None else shift[:, : frames // kt * kt].unflatten(1, (-1, kt)).mean(2)
        return {
            "tokens": self.rope.grid(frames, rows, cols, device=device, column_shift=shift),
            "memory": self.rope.grid(
                frames // kt,
                rows // kh,
                cols // kw,
                strides=(kt, kh, kw),
                offsets=((kt - 1) / 2, 0.0, 0.0),
                device=device,
                column_shift=memory_shift,
            ),
        }

    def _add_aligned_view(self, x: Tensor, latents: Tensor, cam_context: Tensor, cam_target: Tensor) -> Tensor:
        """`DiTConfig.aligned_view_input`: x (B, L, D) tokens with, on each target frame's tokens, the patch-embedded
        context frame of the closest viewing direction (`memory.aligned_view_latents`), token for token."""
        pt = self.cfg.patch_size[0]
        context_frames = cam_context.shape[1] * pt  # latent frames
        views = aligned_view_latents(latents[:, :, :context_frames], cam_context, cam_target, pt)  # (B, C, Ft, H, W)
        views = rearrange(self.view_embedding(views), "b d f h w -> b (f h w) d")
        start = x.shape[1] - views.shape[1]  # the first target token
        return torch.cat([x[:, :start], x[:, start:] + views], dim=1)

    def _blend_aligned_view(
        self, x0: Tensor, latents: Tensor, gate: Tensor, cam_context: Tensor, cam_target: Tensor
    ) -> Tensor:
        """`DiTConfig.aligned_view_gate`: x0 (B, C, F, H, W) with each target frame blended towards its aligned
        context frame (`memory.aligned_views`) by sigmoid(gate) (B, C, F, H, W); context frames unchanged."""
        pt = self.cfg.patch_size[0]
        start = cam_context.shape[1] * pt  # context latent frames
        view = aligned_view_latents(latents[:, :, :start], cam_context, cam_target, pt)  # (B, C, Ft*pt, H, W)
        target = x0[:, :, start:]
        blended = torch.lerp(target, view, torch.sigmoid(gate[:, :, start:]))
        return torch.cat([x0[:, :, :start], blended], dim=2)

    def forward(
        self,
        latents: Tensor,
        timestep: Tensor,
        context: Tensor,
        cam_context: Tensor,
        cam_target: Tensor,
        *,
        num_context_frames: int | None = None,
        return_retrieval: bool = False,
        attention_hook: AttentionHook | None = None,
    ):
        """Predict the flow-matching velocity.

        latents: (B, C, F, H, W) = [context frames ; target frames] along F; timestep: (B,) or (1,);
        context: (B, Lt, text_dim) text embeddings; cam_context: (B, Fc, 12); cam_target: (B, F - Fc, 12):
        the context cameras' rows give Fc; num_context_frames, if given, must agree with them.
        attention_hook: shown the inputs of every self-attention call, e.g. an `attention.AttentionProbe`.
        Returns (B, out_dim, F, H, W), and the list of per-block `Retrieval`s when `return_retrieval`.
        """
        frames, rows, cols, _ = self._check_inputs(latents, cam_context, cam_target, num_context_frames)
        cfg = self.cfg
        batch = latents.shape[0]
        dtype = self.patch_embedding.weight.dtype
        timestep = timestep.reshape(-1).expand(batch) if timestep.numel() == 1 else timestep.reshape(batch)
        # 1. time: embedding t and six modulation vectors t_mod (shared by context and target frames)
        t = self.time_embedding(sinusoidal_embedding(timestep, self.cfg.freq_dim).to(dtype))  # (B, D)
        t_mod = rearrange(self.time_projection(t), "b (six d) -> b six d", six=6)  # (B, 6, D)
        # 2. text
        context = self.text_embedding(context.to(dtype))  # (B, Lt, D)
        # 3. patchify, frame-major token order
        # Contiguous (B, L, D): every later elementwise op and Linear then runs on dense rows (the embedding's
        # channels-first output, merely viewed as (B, L, D), made each norm and Linear copy it first). With a
        # channels-last input oneDNN writes the tokens in that order itself (bf16 on the CPU: no transposing copy;
        # the same values), else `contiguous` copies once.
        patches = self.patch_embedding(latents.to(dtype).contiguous(memory_format=torch.channels_last_3d))
        x = rearrange(patches, "b d f h w -> b (f h w) d").contiguous()  # (B, L, D)
        del patches
        if cfg.aligned_view_input:
            x = self._add_aligned_view(x, latents.to(dtype), cam_context, cam_target)
        grid = (frames, rows, cols)
        turning = torch.cat([cam_context, cam_target], dim=1) if cfg.rope_yaw_columns else None
        ropes = self.rope_tables_per_block(grid, latents.device, turning)
        cameras = (cam_context.to(dtype), cam_target.to(dtype))
        camera_scores = None
        if cfg.attention == "memory" and cfg.retrieval == "camera" and cfg.top_k > 0:
            # Camera-FOV retrieval (ablation): one choice from the input cameras, shared by every block.
            kt = cfg.tokenizer_kernel[0]
            camera_scores = retrieval_camera_scores(torch.cat([cam_context, cam_target], dim=1), frames // kt, kt)
        # 4. blocks
        retrievals = []
        for block, rope in zip(self.blocks, ropes, strict=True):
            x, retrieval = block(x, context, t_mod, cameras, grid, rope, camera_scores, attention_hook)
            retrievals.append(retrieval)
        # 5. head and unpatchify (channel innermost in the head's output vector)
        pt, ph, pw = self.cfg.patch_size
        unpatchify = lambda v: rearrange(  # noqa: E731
            v, "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)", f=frames, h=rows, w=cols, pt=pt, ph=ph, pw=pw
        )  # (B, C, F, H, W)
        gate = None
        if cfg.aligned_view_gate:
            features = self.head.features(x, t)
            x, gate = self.head.head(features), unpatchify(self.view_gate(features))
            del features
        else:
            x = self.head(x, t)
        out = unpatchify(x)
        if cfg.prediction != "velocity":  # x0 -> velocity (x_t - x0) / sigma, in float32
            sigma = (timestep.float() / TIMESTEP_SCALE).reshape(-1, 1, 1, 1, 1)
            x_t, x0 = latents.float(), out.float()
            if cfg.prediction == "preconditioned":
                c_skip, c_out = preconditioning(sigma)
                x0 = c_skip * x_t + c_out * x0
            if gate is not None:
                x0 = self._blend_aligned_view(x0, x_t, gate.float(), cam_context, cam_target)
            out = ((x_t - x0) / sigma.clamp(min=SAMPLE_SIGMA_MIN)).to(out.dtype)
        return (out, retrievals) if return_retrieval else out
