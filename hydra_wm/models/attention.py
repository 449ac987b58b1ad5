"""The one attention dispatch every attention of the DiT goes through, and the hook that can watch it.

`attention` is torch's `scaled_dot_product_attention` and nothing else: the fastest exact kernel for the device,
never a backend chosen by what happens to be installed. A hook (any callable ``hook(q, k, v, mask)``) passed to
`HydraDiT.forward(..., attention_hook=...)` sees the inputs of every self-attention call before it runs and
changes nothing; `AttentionProbe` is the one this repository uses, to measure how sharply a model attends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

AttentionHook = Callable[[Tensor, Tensor, Tensor, "Tensor | None"], None]
"""``hook(q, k, v, mask)`` with the shapes of `attention`'s arguments; its return value is ignored."""


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, hook: AttentionHook | None = None) -> Tensor:
    """The one attention dispatch: (B, N, Lq, d) x (B, N, Lk, d) -> (B, N, Lq, d), scale 1/sqrt(d).

    torch's SDPA picks the fastest exact kernel for the device (flash on CPU and CUDA); no
    installed-package-dependent choice of backend. `hook` is shown the inputs first.
    """
    if hook is not None:
        hook(q, k, v, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def dense_attention(q: Tensor, k: Tensor, v: Tensor, hook: AttentionHook | None = None) -> Tensor:
    """Attention of every token to every token: (B, L, N, d) -> (B, L, N, d)."""
    out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), hook=hook)  # (B, N, L, d)
    return out.transpose(1, 2)


@dataclass
class AttentionStats:
    """One self-attention call seen by an `AttentionProbe` (a chunk of query frames of one block)."""

    effective_keys: Tensor
    """(Bf, T) exp(entropy) of each query's attention weights, averaged over heads: 1 = all on one key, L = uniform."""
    tail_mass: Tensor
    """(Bf, T) attention mass on the keys after the first `window_keys` (in `memory` mode: the memory keys)."""
    num_keys: int
    """Keys each query sees (L)."""


class AttentionProbe:
    """An attention hook that records how sharply the DiT attends: ``model(..., attention_hook=probe)`` appends
    one `AttentionStats` per self-attention call to `probe.calls`.

    Calls come block by block, each block's query frames in chunks (`DiTConfig.attention_chunk_frames`) in memory
    and window mode, all tokens at once in full mode. A diagnostic (it recomputes the softmax in float32), not for
    generation; what the model computes does not change.
    """

    def __init__(self, window_keys: int) -> None:
        self.window_keys = window_keys
        """Keys of the local window, first in every key list; the rest are the tail (memory keys)."""
        self.calls: list[AttentionStats] = []

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> None:
        logits = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B*, N, Lq, Lk)
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        weights = logits.softmax(dim=-1)
        entropy = -(weights * weights.clamp_min(1e-30).log()).sum(dim=-1)
        tail = weights[..., self.window_keys :].sum(dim=-1)
        self.calls.append(AttentionStats(entropy.exp().mean(dim=1), tail.mean(dim=1), k.shape[-2]))
