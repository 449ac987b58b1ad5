"""HyDRA's hybrid-memory attention: memory tokens, relevance-driven top-k retrieval and the local window.

Pure functions on tensors, used by `dit.SelfAttention`. docs/reference.md §1.1 (paper §3; the authors'
`SelfAttention.forward` and `DynamicRetrievalAttention.forward` in `diffsynth/models/wan_video_dit.py`) is the
specification:

* every query frame i attends to a local window of `window` full-resolution frames,
  ``start_i = clamp(i - (window - 1) // 2, 0, F - window)``;
* plus the `top_k` memory frames (tokenizer output, one memory frame per `kt` frames) with the highest
  relevance ``S[i, j] = <mean_tokens(q)_i, mean_tokens(k_mem)_j>``, excluding memory frames that lie
  entirely inside frame i's window (they would duplicate what the window already shows);
* one softmax over [window keys ; selected memory keys].

The attention is batched over frames: one gather builds every frame's key list (its window's tokens and
its retrieved memory tokens), then one `scaled_dot_product_attention` call runs over (batch x frames).
This is exactly the reference's per-frame attention, without its Python loop; `chunk_frames` splits the
frames into a few groups only to bound the memory of the gathered keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..config import ATTENTION_BACKENDS, window_starts
from .attention import AttentionHook, attention


@dataclass
class Retrieval:
    """What one block retrieved: for each query frame, the chosen memory frames and their scores."""

    indices: Tensor
    """(B, F, k) memory-frame indices, best first."""
    scores: Tensor
    """(B, F, k) relevance scores of the chosen memory frames (float32)."""
    valid: Tensor
    """(B, F, k) False where fewer than k memory frames were eligible and the slot is unused."""
    all_scores: Tensor
    """(B, F, Fm) relevance of every memory frame, -inf where excluded by the window (float32)."""


def memory_eligibility(
    num_frames: int, num_memory_frames: int, window: int, frames_per_memory: int, device=None
) -> Tensor:
    """(F, Fm) bool: True where memory frame j is not entirely inside frame i's window.

    Memory frame j summarises frames ``kt*j .. kt*j + kt - 1`` (kt = tokenizer temporal stride).
    """
    window = min(window, num_frames)
    start = window_starts(num_frames, window, device)[:, None]  # (F, 1)
    first = torch.arange(num_memory_frames, device=device)[None, :] * frames_per_memory  # (1, Fm)
    last = first + frames_per_memory - 1
    inside = (first >= start) & (last <= start + window - 1)
    return ~inside


def relevance_scores(q: Tensor, k_mem: Tensor, eligible: Tensor) -> Tensor:
    """(B, F, Fm) float32 relevance of memory frames to query frames.

    q: (B, F, T, D) queries before RoPE; k_mem: (B, Fm, Tm, D) memory keys before RoPE;
    eligible: (F, Fm). Computed in float32 whatever the model dtype, so that bf16 rounding cannot
    change which frames are retrieved. No 1/sqrt(d): the reference scores with a plain dot product.
    """
    q_mean = q.float().mean(dim=2)  # (B, F, D)
    k_mean = k_mem.float().mean(dim=2)  # (B, Fm, D)
    scores = torch.einsum("bfd,bmd->bfm", q_mean, k_mean)
    return scores.masked_fill(~eligible, float("-inf"))


VIEW_DIRECTION = (2, 6, 10)
"""Entries of a relative camera 12-vector (top 3x4 of the camera-to-world pose, row-major, columns right, down,
forward, position: `data/cameras.py`) holding the third column of R: the camera's viewing direction."""


def camera_scores(cameras: Tensor, num_memory_frames: int, kernel_frames: int) -> Tensor:
    """(B, F, Fm) float32 camera-FOV relevance (the paper's retrieval ablation): the cosine between the viewing
    direction of frame i and the mean viewing direction of memory frame j (frames kt*j .. kt*j + kt - 1).

    cameras: (B, F, 12) relative cameras of all frames (context then target), one per latent frame. For cameras
    that only rotate, ranking by this cosine is ranking by field-of-view overlap; translation is ignored.
    """
    views = F.normalize(cameras[..., list(VIEW_DIRECTION)].float(), dim=-1)  # (B, F, 3)
    used = num_memory_frames * kernel_frames
    memory = F.normalize(rearrange(views[:, :used], "b (m k) c -> b m k c", k=kernel_frames).mean(dim=2), dim=-1)
    return torch.einsum("bfc,bmc->bfm", views, memory)


@torch.no_grad()
def aligned_views(cam_context: Tensor, cam_target: Tensor) -> Tensor:
    """(B, Ft) long: for each target frame, the context frame whose viewing direction is closest (largest cosine;
    of equally aligned frames the latest, whose subjects are the most recent). `DiTConfig.aligned_view_input`.

    cam_context: (B, Fc, 12), cam_target: (B, Ft, 12) relative cameras, one per token frame."""
    context = F.normalize(cam_context[..., list(VIEW_DIRECTION)].double(), dim=-1)
    target = F.normalize(cam_target[..., list(VIEW_DIRECTION)].double(), dim=-1)
    cosine = torch.einsum("btc,bfc->btf", target, context)  # (B, Ft, Fc)
    # Ties (the same heading held or revisited) go to the latest frame: a later index wins by a margin far below
    # any real difference of float32 cameras and far above float64 rounding.
    order = torch.arange(cosine.shape[-1], dtype=cosine.dtype, device=cosine.device) * 1e-9
    return (cosine + order).argmax(dim=-1)


def aligned_view_latents(
    context_latents: Tensor, cam_context: Tensor, cam_target: Tensor, patch_frames: int = 1
) -> Tensor:
    """(B, C, Ft, h, w): for each target latent frame, the latents of the context frame whose viewing direction is
    closest (`aligned_views`, per token frame of `patch_frames` latent frames)."""
    best = aligned_views(cam_context, cam_target).to(context_latents.device)  # (B, Ft tokens)
    frames = (best[:, :, None] * patch_frames + torch.arange(patch_frames, device=best.device)).flatten(1)
    index = frames[:, None, :, None, None].expand(-1, context_latents.shape[1], -1, *context_latents.shape[3:])
    return torch.gather(context_latents, 2, index)


@torch.no_grad()
def select_memory(scores: Tensor, top_k: int) -> Retrieval:
    """Top-k memory frames per query frame. k is clamped to the number of memory frames; where a frame
    has fewer eligible memory frames than k, the extra slots are marked invalid (masked in attention)
    instead of picking excluded frames as the reference would. No gradient flows through the choice."""
    k = min(top_k, scores.shape[-1])
    top_scores, top_idx = scores.topk(k, dim=-1)
    return Retrieval(top_idx, top_scores, torch.isfinite(top_scores), scores)


GATHER_BYTES = 256 * 2**20
"""Gathered keys and values up to this size are gathered for all query frames at once (`windowed_memory_attention`)."""
CHUNK_BYTES = 24 * 2**20
"""On the CPU, larger inputs gather chunk by chunk, each chunk's keys (and values) at most this size, whatever
`chunk_frames` asks: freshly allocated buffers above glibc's largest mmap threshold (32 MiB) are mapped and
page-faulted anew for every chunk, smaller ones are reused from the heap (head dim 128: 2 frames per chunk instead
of 4 in float32)."""


def key_index(
    num_frames: int,
    tokens_per_frame: int,
    window: int,
    num_keys: int,
    retrieval: Retrieval | None = None,
    memory_tokens_per_frame: int = 0,
    batch: int = 1,
) -> Tensor:
    """(B, F, w*T [+ k*Tm]) rows of the batch-flattened keys (B * Lk rows, each item's Lk = `num_keys` keys: its
    F*T full-resolution tokens, then its memory tokens) that each query frame attends to: its window's tokens, then
    its retrieved memory frames' tokens, best first."""
    device = None if retrieval is None else retrieval.indices.device
    T = tokens_per_frame
    starts = window_starts(num_frames, window, device)  # (F,)
    window_frames = starts[:, None] + torch.arange(window, device=device)  # (F, w)
    index = rearrange(window_frames[:, :, None] * T + torch.arange(T, device=device), "f w t -> f (w t)")
    index = index.expand(batch, -1, -1)  # (B, F, w*T)
    if retrieval is not None:
        Tm = memory_tokens_per_frame
        memory = retrieval.indices[..., None] * Tm + torch.arange(Tm, device=device) + num_frames * T  # (B, F, k, Tm)
        index = torch.cat([index, rearrange(memory, "b f k t -> b f (k t)")], dim=2)
    return index + torch.arange(batch, device=device)[:, None, None] * num_keys


def windowed_memory_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_frames: int,
    window: int,
    k_mem: Tensor | None = None,
    v_mem: Tensor | None = None,
    retrieval: Retrieval | None = None,
    chunk_frames: int = 0,
    hook: AttentionHook | None = None,
    backend: str = "gather",
) -> Tensor:
    """Each query frame attends to its local window plus (optionally) its retrieved memory frames.

    q: (B, F*T, N, d) full-resolution queries after RoPE, frame-major. k, v: (B, F*T, N, d) the full-resolution
    keys and values after RoPE, or (B, F*T + Fm*Tm, N, d) with the memory tokens appended (then k_mem and v_mem
    are None: the caller built them in one tensor, which spares a copy here). k_mem, v_mem: (B, Fm*Tm, N, d)
    memory tokens after RoPE; retrieval: the chosen memory frames (None: window only).
    chunk_frames: query frames per attention call at most (0: all at once); hook: shown every call
    (`models.attention`). backend: `gather` (the keys of each chunk of query frames gathered, then
    `attention`) or `flex` (`flex_memory_attention`: no gathered copies; the gather path runs instead when a hook
    is given, since the hook is shown the gathered keys). Returns (B, F*T, N, d).
    """
    B, L, N, d = q.shape
    T = L // num_frames
    window = min(window, num_frames)
    use_memory = retrieval is not None
    if use_memory and k_mem is not None:
        k, v = torch.cat([k, k_mem], dim=1), torch.cat([v, v_mem], dim=1)
    elif not use_memory:
        k, v = k[:, :L], v[:, :L]
    if backend == "flex" and hook is None:
        return flex_memory_attention(q, k, v, num_frames, window, retrieval)
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"backend: expected one of {ATTENTION_BACKENDS}, got {backend!r}")
    num_keys = k.shape[1]  # per batch item
    Tm = (num_keys - L) // retrieval.all_scores.shape[-1] if use_memory else 0
    # One index_select per chunk from the batch-flattened [keys ; memory keys] builds each frame's key list in
    # its final layout (window tokens, then retrieved memory tokens), with no concatenation per chunk.
    index = key_index(num_frames, T, window, num_keys, retrieval, Tm, B).to(q.device)  # (B, F, Lk)
    keys_per_frame = index.shape[-1]
    k_flat, v_flat = k.reshape(B * num_keys, N, d), v.reshape(B * num_keys, N, d)
    mask = None
    if use_memory and not bool(retrieval.valid.all()):
        # Unused slots (fewer eligible memory frames than k) are masked out of the softmax.
        window_ok = retrieval.valid.new_ones(B, num_frames, window * T)
        mask = torch.cat([window_ok, retrieval.valid.repeat_interleave(Tm, dim=2)], dim=2)  # (B, F, Lk)
    queries = rearrange(q, "b (f t) n d -> b f n t d", f=num_frames)  # (B, F, N, T, d)

    def gather(frames: slice) -> tuple[Tensor, Tensor]:
        """Keys and values (B, f, Lk, N, d) of the query frames."""
        rows = index[:, frames].flatten()
        f = index[:, frames].shape[1]
        return k_flat.index_select(0, rows).view(B, f, -1, N, d), v_flat.index_select(0, rows).view(B, f, -1, N, d)

    step = chunk_frames if chunk_frames > 0 else num_frames
    # Gathers use index_select, whose backward is one index_add into a zero-filled tensor of the source's size
    # (advanced indexing's backward, an accumulating index_put, is several times slower on the CPU). When every
    # frame's keys fit in `GATHER_BYTES`, they are gathered at once and split into the chunks (split's backward is
    # a concatenation), so that the zero fill happens once per block instead of once per chunk: 1.7x faster
    # windowed attention forward+backward for `flatland-tiny` training on a CPU. Larger inputs (the real model)
    # gather chunk by chunk, each chunk at most `CHUNK_BYTES`, to bound memory; so does every forward without
    # gradient (no zero fill to save; smaller buffers stay in cache). Query frames go in chunks only to bound the
    # attention's memory; the result is identical either way.
    frame_bytes = B * keys_per_frame * N * d * k.element_size()
    backward = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    at_once = backward and step < num_frames and 2 * num_frames * frame_bytes <= GATHER_BYTES
    if chunk_frames > 0 and not at_once and k.device.type == "cpu":  # (CUDA's caching allocator maps nothing)
        step = max(1, min(step, CHUNK_BYTES // frame_bytes))
    chunks = [slice(first, first + step) for first in range(0, num_frames, step)]
    if at_once:
        keys, values = gather(slice(0, num_frames))
        gathered = zip(chunks, keys.split(step, dim=1), values.split(step, dim=1), strict=True)
    else:
        gathered = ((frames, *gather(frames)) for frames in chunks)
    # Without autograd each chunk's output goes straight into place (a list and a concatenation would hold the
    # output twice at the end).
    outputs = [] if backward else q.new_empty(B, num_frames, T, N, d)
    # Queries split too: slicing a chunk out of them would zero-fill a query-sized gradient per chunk.
    for chunk_queries, (frames, keys, values) in zip(queries.split(step, dim=1), gathered, strict=True):
        chunk_out = attention(
            rearrange(chunk_queries, "b f n t d -> (b f) n t d"),
            rearrange(keys, "b f l n d -> (b f) n l d"),
            rearrange(values, "b f l n d -> (b f) n l d"),
            None if mask is None else rearrange(mask[:, frames], "b f l -> (b f) 1 1 l"),
            hook,
        )  # (B*f, N, T, d)
        chunk_out = rearrange(chunk_out, "(b f) n t d -> b f t n d", b=B)
        if backward:
            outputs.append(chunk_out)
        else:
            outputs[:, frames].copy_(chunk_out)
    return rearrange(torch.cat(outputs, dim=1) if backward else outputs, "b f t n d -> b (f t) n d")


_compiled_flex_attention = None


def flex_memory_attention(
    q: Tensor, k: Tensor, v: Tensor, num_frames: int, window: int, retrieval: Retrieval | None = None
) -> Tensor:
    """`windowed_memory_attention` as one torch FlexAttention call with a block mask, gathering nothing.

    q: (B, F*T, N, d); k, v: (B, F*T [+ Fm*Tm], N, d) full-resolution keys [then memory keys]; retrieval as there.
    Query token t of frame i may see key j when j is a full-resolution token of a frame in i's window, or a memory
    token of one of i's valid retrieved memory frames: the same keys as the gather path, in one softmax (the order
    of the keys differs, so results agree to rounding). The block mask lets the kernel skip key blocks no query of
    a query block sees, so memory traffic follows the keys used instead of copying them per chunk. On CUDA the
    kernel is compiled (`torch.compile`, once per process and shape); elsewhere it runs eagerly (a dense reference
    computation: for tests, not speed)."""
    global _compiled_flex_attention
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    B, L, N, d = q.shape
    T = L // num_frames
    num_keys = k.shape[1]
    device = q.device
    window = min(window, num_frames)
    starts = window_starts(num_frames, window, device)  # (F,)
    if retrieval is not None:
        mem_frames = retrieval.all_scores.shape[-1]
        Tm = (num_keys - L) // mem_frames
        chosen = torch.zeros(B, num_frames, mem_frames, dtype=torch.bool, device=device)
        chosen.scatter_(2, retrieval.indices.to(device), retrieval.valid.to(device))  # (B, F, Fm)

    def mask_mod(b, h, q_idx, kv_idx):
        frame = q_idx // T
        start = starts[frame]
        kv_frame = kv_idx // T
        allowed = (kv_idx < L) & (kv_frame >= start) & (kv_frame < start + window)
        if retrieval is not None:
            memory_frame = ((kv_idx - L).clamp(min=0) // Tm).clamp(max=mem_frames - 1)
            allowed = allowed | ((kv_idx >= L) & chosen[b, frame, memory_frame])
        return allowed

    cuda = device.type == "cuda"
    # On CUDA the mask is built block by block by a compiled kernel (the dense mask would be B x L x Lk bytes).
    block_mask = create_block_mask(mask_mod, B, None, L, num_keys, device=device, _compile=cuda)
    run = flex_attention
    if cuda:
        if _compiled_flex_attention is None:
            _compiled_flex_attention = torch.compile(flex_attention, dynamic=False)
        run = _compiled_flex_attention
    out = run(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=block_mask)  # (B, N, L, d)
    return out.transpose(1, 2)
