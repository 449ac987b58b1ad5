"""A subject tracker for generated frames that needs nothing beyond the CLIP model DSC already uses.

The authors' ``eval_dsc.py`` obtains the boxes of the generated subject from a YOLOv11 tracker that was never
released. This one is a template matcher on CLIP's patch grid:

1. template: the mean of the subject's normalised ROI features over the context frames (exactly the features
   DSC compares), re-normalised;
2. box sizes: the median context box width and height, at scales 0.8, 1.0 and 1.25, rounded to whole patches
   (at least one patch, at most the grid);
3. candidates: every placement of those boxes on the integer patch grid; a candidate's feature is the mean of
   the patch tokens it covers (summed-area table, so all placements cost one cumulative sum per frame);
4. per frame, the candidate with the highest cosine similarity to the template is the subject's box.

There is no presence threshold: every frame handed in gets its best box. DSC hands in the generated frames
whose ground-truth frame shows the subject, so a generated subject that vanished is scored on whatever
resembles it most (which lowers DSC) rather than dropped from the average (which would reward vanishing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError

SCALES = (0.8, 1.0, 1.25)


def box_means(grid: Tensor, box_h: int, box_w: int) -> Tensor:
    """Mean patch feature of every ``box_h`` x ``box_w`` placement: ``[T, D, g, g]`` → ``[T, D, ny, nx]``
    with ``ny = g - box_h + 1``, ``nx = g - box_w + 1`` (index = top-left patch)."""
    table = F.pad(grid.double().cumsum(dim=2).cumsum(dim=3), (1, 0, 1, 0))  # (T, D, g+1, g+1)
    sums = (
        table[:, :, box_h:, box_w:]
        - table[:, :, :-box_h, box_w:]
        - table[:, :, box_h:, :-box_w]
        + table[:, :, :-box_h, :-box_w]
    )
    return sums / (box_h * box_w)


def track_subject(
    grid: Tensor, template: Tensor, context_boxes: Tensor, scales: tuple[float, ...] = SCALES
) -> tuple[Tensor, Tensor]:
    """Best-matching subject box in each frame.

    ``grid``: patch tokens ``[T, D, gh, gw]`` of the frames to search; ``template``: ``[D]``;
    ``context_boxes``: ``[N, 4]`` frame-relative boxes of the subject in the context (sizes only are used).
    Returns frame-relative boxes ``[T, 4]`` (x0, y0, x1, y1, on patch edges) and their similarity ``[T]``.
    """
    if grid.ndim != 4 or template.shape != (grid.shape[1],) or context_boxes.ndim != 2 or len(context_boxes) == 0:
        raise InputError(
            f"track_subject: expected grid [T, D, g, g], template [D] and context boxes [N, 4], got "
            f"{list(grid.shape)}, {list(template.shape)}, {list(context_boxes.shape)}"
        )
    T, _, gh, gw = grid.shape
    width = float((context_boxes[:, 2] - context_boxes[:, 0]).median())
    height = float((context_boxes[:, 3] - context_boxes[:, 1]).median())
    template = F.normalize(template.double(), dim=0)
    best_score = torch.full((T,), -2.0, dtype=torch.float64)
    best_box = torch.zeros(T, 4, dtype=torch.float64)
    sizes = {(min(max(round(s * height * gh), 1), gh), min(max(round(s * width * gw), 1), gw)) for s in scales}
    for box_h, box_w in sorted(sizes):
        means = F.normalize(box_means(grid, box_h, box_w), dim=1)  # (T, D, ny, nx)
        score = torch.einsum("tdyx,d->tyx", means, template).flatten(1)  # (T, ny*nx)
        value, index = score.max(dim=1)
        nx = gw - box_w + 1
        y, x = (index // nx).double(), (index % nx).double()
        boxes = torch.stack([x / gw, y / gh, (x + box_w) / gw, (y + box_h) / gh], dim=1)
        better = value > best_score
        best_score = torch.where(better, value, best_score)
        best_box[better] = boxes[better]
    return best_box, best_score
