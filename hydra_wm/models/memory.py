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

from ..config import window_starts
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
def select_memory(scores: Tensor, top_k: int) -> Retrieval:
    """Top-k memory frames per query frame. k is clamped to the number of memory frames; where a frame
    has fewer eligible memory frames than k, the extra slots are marked invalid (masked in attention)
    instead of picking excluded frames as the reference would. No gradient flows through the choice."""
    k = min(top_k, scores.shape[-1])
    top_scores, top_idx = scores.topk(k, dim=-1)
    return Retrieval(top_idx, top_scores, torch.isfinite(top_scores), scores)


GATHER_BYTES = 256 * 2**20
"""Gathered keys and values up to this size are gathered for all query frames at once (`windowed_memory_attention`)."""


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
) -> Tensor:
    """Each query frame attends to its local window plus (optionally) its retrieved memory frames.

    q, k, v: (B, F*T, N, d) full-resolution tokens after RoPE, frame-major.
    k_mem, v_mem: (B, Fm*Tm, N, d) memory tokens after RoPE; retrieval: the chosen memory frames.
    chunk_frames: query frames per attention call (0: all at once); hook: shown every call (`models.attention`).
    Returns (B, F*T, N, d).
    """
    B, L, N, d = q.shape
    T = L // num_frames
    window = min(window, num_frames)
    device = q.device
    # Token indices of each query frame's window, then (optionally) of its retrieved memory frames.
    starts = window_starts(num_frames, window, device)  # (F,)
    window_frames = starts[:, None] + torch.arange(window, device=device)  # (F, w)
    tokens = torch.arange(T, device=device)
    window_index = rearrange(window_frames[:, :, None] * T + tokens, "f w t -> f (w t)")  # (F, w*T)
    use_memory = retrieval is not None and k_mem is not None and v_mem is not None
    if use_memory:
        Lm = k_mem.shape[1]
        Tm = Lm // retrieval.all_scores.shape[-1]
        memory_index = retrieval.indices[..., None] * Tm + torch.arange(Tm, device=device)  # (B, F, k, Tm)
        # Indices into the batch-flattened memory tokens (B*Lm), so that one index_select serves every batch item.
        batch_offset = torch.arange(B, device=device)[:, None, None] * Lm
        memory_index = rearrange(memory_index, "b f k t -> b f (k t)") + batch_offset
        k_mem_flat, v_mem_flat = k_mem.reshape(B * Lm, N, d), v_mem.reshape(B * Lm, N, d)
        # Unused slots (fewer eligible memory frames than k) are masked out of the softmax.
        slot_ok = None if bool(retrieval.valid.all()) else retrieval.valid.repeat_interleave(Tm, dim=2)
    queries = rearrange(q, "b (f t) n d -> b f n t d", f=num_frames)  # (B, F, N, T, d)

    def gather(frames: slice) -> tuple[Tensor, Tensor, Tensor | None]:
        """Keys, values (B, f, Lk, N, d) and the slot mask ((B, f, Lk) or None) of the query frames."""
        chunk_window = window_index[frames]  # (f, w*T)
        f = chunk_window.shape[0]
        keys = k.index_select(1, chunk_window.flatten()).view(B, f, -1, N, d)  # (B, f, w*T, N, d)
        values = v.index_select(1, chunk_window.flatten()).view(B, f, -1, N, d)
        mask = None
        if use_memory:
            chunk_memory = memory_index[:, frames].flatten()  # keys/values below: (B, f, Lk, N, d)
            keys = torch.cat([keys, k_mem_flat.index_select(0, chunk_memory).view(B, f, -1, N, d)], dim=2)
            values = torch.cat([values, v_mem_flat.index_select(0, chunk_memory).view(B, f, -1, N, d)], dim=2)
            if slot_ok is not None:
                window_ok = slot_ok.new_ones(*slot_ok[:, frames].shape[:2], window * T)
                mask = torch.cat([window_ok, slot_ok[:, frames]], dim=2)
        return keys, values, mask

    step = chunk_frames if chunk_frames > 0 else num_frames
    chunks = [slice(first, first + step) for first in range(0, num_frames, step)]
    # Gathers use index_select, whose backward is one index_add into a zero-filled tensor of the source's size
    # (advanced indexing's backward, an accumulating index_put, is several times slower on the CPU). When every
    # frame's keys fit in `GATHER_BYTES`, they are gathered at once and split into the chunks (split's backward is
    # a concatenation), so that the zero fill happens once per block instead of once per chunk: 1.7x faster
    # windowed attention forward+backward for `flatland-tiny` training on a CPU. Larger inputs (the real model)
    # gather chunk by chunk to bound memory. Query frames go in chunks only to bound the attention's memory; the
    # result is identical either way.
    keys_per_frame = window * T + (memory_index.shape[-1] if use_memory else 0)
    gathered_bytes = 2 * B * num_frames * keys_per_frame * N * d * k.element_size()
    if len(chunks) > 1 and gathered_bytes <= GATHER_BYTES:
        keys, values, mask = gather(slice(0, num_frames))
        masks = [None] * len(chunks) if mask is None else mask.split(step, dim=1)
        gathered = zip(chunks, keys.split(step, dim=1), values.split(step, dim=1), masks, strict=True)
    else:
        gathered = ((frames, *gather(frames)) for frames in chunks)
    outputs = []
    # Queries split too: slicing a chunk out of them would zero-fill a query-sized gradient per chunk.
    for chunk_queries, (_, keys, values, mask) in zip(queries.split(step, dim=1), gathered, strict=True):
        chunk_out = attention(
            rearrange(chunk_queries, "b f n t d -> (b f) n t d"),
            rearrange(keys, "b f l n d -> (b f) n l d"),
            rearrange(values, "b f l n d -> (b f) n l d"),
            None if mask is None else rearrange(mask, "b f l -> (b f) 1 1 l"),
            hook,
        )  # (B*f, N, T, d)
        outputs.append(rearrange(chunk_out, "(b f) n t d -> b f t n d", b=B))
    return rearrange(torch.cat(outputs, dim=1), "b f t n d -> b (f t) n d")
