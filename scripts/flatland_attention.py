"""How sharply a Flatland world model attends: per block, for target frames beyond the window's reach of the
context, the effective number of keys a query uses (exp of the attention entropy, averaged over queries and
heads) out of the keys it sees, and (memory models) the attention mass on the retrieved memory keys.

    python scripts/flatland_attention.py [--attention memory | --weights FILE] [--samples 4] [--sigmas 0.3 0.7 1.0]

One denoiser call per clip and noise level: the target latents noised to sigma (fixed noise), the context clean,
as in training. A model that copies a revisited view puts most of a query's attention on a few keys; uniform
attention over L keys gives L effective keys and a memory mass equal to the memory keys' share.
"""

from __future__ import annotations

import argparse

import torch

from hydra_wm.config import ATTENTION_MODES
from hydra_wm.flatland import render_clip
from hydra_wm.flatland.dataset import clip_to_item
from hydra_wm.flatland.model import HELD_OUT_SEED, load_flatland_model
from hydra_wm.models.attention import AttentionProbe
from hydra_wm.models.dit import TIMESTEP_SCALE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", default="memory", choices=ATTENTION_MODES)
    parser.add_argument("--weights", default=None, help="a DiT file from `hydra-wm export` (card beside it)")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.3, 0.7, 1.0])
    args = parser.parse_args()
    model = load_flatland_model(args.attention, args.weights)
    dit, config = model.dit, model.flatland
    print(f"{model.path}: attention {dit.cfg.attention}, {args.samples} clips of {model.card.flatland_preset} "
          f"(seed {args.seed}); per block: effective keys / keys seen [memory mass / memory key share]")  # fmt: skip
    for sigma in args.sigmas:
        totals = torch.zeros(dit.cfg.num_layers, 2)  # per block: effective keys, memory mass (summed over clips)
        for index in range(args.samples):
            clip = render_clip(config, seed=args.seed, index=index)
            item = clip_to_item(clip, config, model.codec.latent_stride)
            context = model.codec.encode(item["context"][None])
            target = model.codec.encode(item["target"][None])
            noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(index))
            latents = torch.cat([context, (1 - sigma) * target + sigma * noise], dim=2)
            tokens = (latents.shape[3] // dit.cfg.patch_size[1]) * (latents.shape[4] // dit.cfg.patch_size[2])
            window_keys = min(dit.cfg.window, latents.shape[2]) * tokens
            probe = AttentionProbe(window_keys)
            with torch.no_grad():
                dit(latents, torch.tensor([sigma * TIMESTEP_SCALE]), torch.zeros(1, 1, dit.cfg.text_dim),
                    item["context_cameras"][None], item["target_cameras"][None], attention_hook=probe)  # fmt: skip
            calls = probe.calls
            per_block = len(calls) // dit.cfg.num_layers  # memory/window attention runs in chunks of query frames
            # query frames whose window holds no context frame: from Tc + (w-1)//2 on (`config.window_starts`)
            first = context.shape[2] + (dit.cfg.window - 1) // 2
            for block in range(dit.cfg.num_layers):
                chunks = calls[block * per_block : (block + 1) * per_block]
                for column, name in enumerate(("effective_keys", "tail_mass")):
                    per_query = torch.cat([getattr(c, name) for c in chunks]).reshape(-1, tokens)  # (F, T)
                    totals[block, column] += per_query[first:].mean()
        keys = calls[0].num_keys
        cells = []
        for block, (effective, mass) in enumerate((totals / args.samples).tolist()):
            memory = f" [{mass:.2f}/{1 - window_keys / keys:.2f}]" if dit.cfg.attention == "memory" else ""
            cells.append(f"block {block}: {effective:.0f}/{keys}{memory}")
        print(f"sigma {sigma:.2f}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
