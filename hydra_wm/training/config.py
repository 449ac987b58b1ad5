"""`TrainConfig`: every knob of `hydra-wm train`, typed, documented per field and validated on construction.

Defaults reproduce the reference recipe (docs/reference.md §5): only HyDRA's and the self-attention parameters train,
AdamW at lr 1e-5, one timestep per batch from the 1000 training timesteps weighted by w(t), bf16 (on GPU),
gradient checkpointing per block. The `hydra-wm train` options are generated from this class (one option per
field, its help text the field's docstring, its choices `FIELD_CHOICES`: `commands/options.py`), so the CLI and the
Python API cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..config import ATTENTION_MODES, DIT_PRESETS, PREDICTIONS, RETRIEVAL_MODES, dit_config, int_triple
from ..distributed import DEVICE_PREFERENCES
from ..errors import ConfigError

TRAINABLE = ("auto", "hydra", "all")
PRECISIONS = ("auto", "fp32", "bf16")
PARALLEL = ("ddp", "fsdp")
LR_SCHEDULES = ("constant", "cosine")
TIMESTEP_SAMPLING = ("batch", "sample")
LOSS_WEIGHTING = ("reference", "none", "x0")
DEVICES = DEVICE_PREFERENCES
FLATLAND_PREFIX = "flatland:"
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "attention": ATTENTION_MODES,
    "retrieval": RETRIEVAL_MODES,
    "prediction": PREDICTIONS,
    "preset": tuple(sorted(DIT_PRESETS)),
    "trainable": TRAINABLE,
    "precision": PRECISIONS,
    "parallel": PARALLEL,
    "lr_schedule": LR_SCHEDULES,
    "timesteps": TIMESTEP_SAMPLING,
    "loss_weighting": LOSS_WEIGHTING,
    "device": DEVICES,
}
"""Allowed values of each string field: what `TrainConfig` accepts and the choices of `hydra-wm train`'s options."""


@dataclass
class TrainConfig:
    """One training run: data, model, optimisation, distribution, checkpoints and logging."""

    out: str = "runs/hydra"
    """Run folder: config.json, checkpoints/, train_log.jsonl, the exported model."""
    data: str | None = None
    """Folder written by `hydra-wm preprocess`, or `flatland:PRESET` (e.g. `flatland:small`): Flatland clips
    rendered and encoded on the fly by `models.codecs.PixelCodec` (`flatland_codec_factor`) with a null text embedding,
    nothing on disk. None only when a dataset object is passed to `train()`."""
    flatland_samples: int = 10_000
    """With `flatland:PRESET` data: number of clips (clip i is always the same clip for one seed)."""
    flatland_seed: int = 0
    """With `flatland:PRESET` data: seed of the Flatland world (which clips), apart from `seed`."""
    flatland_codec_factor: int = 2
    """With `flatland:PRESET` data: space-to-depth factor of the `PixelCodec` (2: 12 latent channels at half the
    frame size; 4: 48 channels at a quarter, 4x fewer tokens per frame)."""
    flatland_chunk_frames: int = 0
    """With `flatland:PRESET` data: 0 trains on whole clips (the preset's context, then its target); N > 0 on chunks
    of N target frames of each clip, conditioned as a rollout conditions them (`flatland.training.
    FlatlandChunkDataset`: the 8 newest frames before the chunk plus frames pre-selected from all earlier ones by
    camera, as many as the preset's context frames; the true frames as history), e.g. `flatland:long-glance` with
    20: the models `hydra-wm demo --rollout` runs, trained on the input layout they get there."""
    init: str | None = None
    """Checkpoint to start from: the base Wan2.1 DiT (HyDRA modules initialised as the reference does) or a
    HyDRA checkpoint (e.g. the released hydra.ckpt). Exclusive with `preset`."""
    preset: str | None = None
    """DiT preset for a freshly initialised model (e.g. `debug`); its in/out/text widths follow the data."""
    attention: str | None = None
    """Self-attention mode to train: memory (HyDRA), full (dense baseline) or window (no memory); None keeps
    the checkpoint's or preset's."""
    retrieval: str | None = None
    """How `memory` attention ranks memory frames: relevance (HyDRA's learned scores) or camera (the paper's
    camera-FOV retrieval ablation); None keeps the checkpoint's or preset's."""
    prediction: str | None = None
    """What a fresh preset's head predicts: velocity (Wan2.1) or sample (x0, turned into the velocity inside the
    model: see `DiTConfig.prediction`); None keeps the checkpoint's or preset's."""
    tokenizer_kernel: tuple[int, int, int] | None = None
    """Memory tokenizer kernel = stride (frames, rows, columns) of a fresh preset (HyDRA: 2 2 2; 1 1 1 keeps
    memory tokens at full resolution: a documented deviation); None keeps the preset's. Needs `preset` (a
    checkpoint's kernel is fixed by its weights)."""
    dim: int | None = None
    """Hidden width of a fresh preset; None keeps the preset's. With `num_heads`, `num_layers` and `ffn_dim`: the
    size of a model trained from scratch (e.g. Flatland scaling studies). Needs `preset`."""
    num_heads: int | None = None
    """Attention heads of a fresh preset (the head width `dim / num_heads` must split into RoPE's three parts);
    None keeps the preset's. Needs `preset`."""
    num_layers: int | None = None
    """DiT blocks of a fresh preset; None keeps the preset's. Needs `preset`."""
    ffn_dim: int | None = None
    """Feed-forward width of a fresh preset; None keeps the preset's. Needs `preset`."""
    aligned_view_input: bool = False
    """Train with `DiTConfig.aligned_view_input` (each target frame also gets the context frame of the closest
    viewing direction, token for token; a deviation for worlds like Flatland's `glance`, off for the real model).
    From a checkpoint without it, its embedding starts as the checkpoint's patch embedding; a checkpoint with it
    keeps it either way."""
    aligned_view_gate: bool = False
    """Train with `DiTConfig.aligned_view_gate` (each target frame's clean-sample prediction blended towards the
    aligned context frame by a learned gate; needs a clean-sample prediction). From a checkpoint without it the gate
    starts nearly shut; a checkpoint with it keeps it either way."""
    rope_yaw_columns: float | None = None
    """Train with `DiTConfig.rope_yaw_columns` (camera-aware RoPE columns: each frame's column positions shifted by
    its yaw times this many token columns per radian; 5.09 for Flatland `small-glance` with codec factor 2); None
    keeps the checkpoint's or preset's (off). A deviation for turning cameras, off for the real model."""
    rope_head_velocity: tuple[float, ...] | None = None
    """Train with `DiTConfig.rope_head_velocity` (motion-sheared RoPE heads: head h's columns move by -v_h token
    columns per frame; one value per head, or per block and head); None keeps the checkpoint's or preset's (off).
    From a checkpoint without it, the sheared heads start from the weights learned without. A deviation, off for the
    real model."""
    rope_yaw_heads: tuple[float, ...] | None = None
    """Train with `DiTConfig.rope_yaw_heads` (which heads `rope_yaw_columns` shifts: 1 world columns, 0 the
    screen's; per head, or per block and head); None keeps the checkpoint's or preset's (every head)."""
    top_k: int | None = None
    """Memory frames each query frame retrieves in `memory` mode (HyDRA: 10); None keeps the checkpoint's or
    preset's. A model's top-k is not fixed by its weights, so it may also change when starting from a checkpoint."""
    qk_norm_init: float | None = None
    """Initial gain (RMSNorm weight) of every self-attention norm_q and norm_k of a fresh preset; None: 1, the
    reference's. Attention logits scale by its square. With QK-norm the logits of a head of width d reach about
    sqrt(d) when the heads share the norm evenly (6.9 for flatland-tiny's 48, close to ln of its ~480 memory-mode
    keys), so a tiny model starts unable to attend sharply (to copy one token). Needs `preset`."""
    camera_init_std: float | None = None
    """Initial weights of every camera encoder (cam_encoder_con/_tgt) of a fresh preset drawn from N(0, std²);
    None: zero, the reference's (right on top of a pretrained Wan2.1: the base model starts unchanged). From
    scratch, zero-initialised encoders make the camera a faint signal that grows slowly. Needs `preset`."""
    copy_init: bool = False
    """Start a fresh preset's self-attention as a similarity search: every block's key projection a copy of its
    query projection (q.k is then a positive semi-definite form of the two tokens before RoPE: like attends to
    like, and RoPE makes the same position score highest), the target-camera encoder a copy of the context-camera
    encoder (one heading, one embedding) and the memory tokenizer an average pool of the tokens it summarises (a
    memory key is the key of the mean token). False: independent random init (the reference's, right for a
    pretrained Wan2.1). A deliberate deviation for small models trained from scratch, whose task is largely to
    copy a returning view from the context. Needs `preset`."""
    trainable: str = "auto"
    """Parameters that train: `hydra` = every parameter under self_attn (incl. the memory tokenizer),
    cam_encoder_* and projector (the reference; plus the `aligned_view_*` modules where there are any);
    `all` = everything (from-scratch models); `auto` = all for a fresh preset; from a checkpoint, the set it was
    trained with when its file records one (exports of `hydra-wm train` do), else hydra (Wan2.1 and HyDRA's
    released files). The run prints the set and how many parameters it holds."""
    steps: int = 10_000
    """Optimiser steps of the whole run (the LR schedule spans them). Paper: 10K."""
    stop_after: int | None = None
    """End this invocation after this global step with a checkpoint (the schedule still spans `steps`);
    continue later with `resume`."""
    batch_size: int = 1
    """Samples per process per micro-step (global batch = batch_size x grad_accum x processes)."""
    grad_accum: int = 1
    """Micro-steps accumulated per optimiser step."""
    lr: float = 1e-5
    """Peak AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay (PyTorch's default, as the reference's optimiser)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up from 0 over this many steps."""
    lr_schedule: str = "constant"
    """After warm-up: `constant` (reference) or `cosine` decay to 0 at `steps`."""
    grad_clip: float = 0.0
    """Clip the global gradient norm to this value (0: off, as the reference)."""
    ema_decay: float = 0.0
    """Exponential moving average of the trainable weights with this decay (0: off); saved in checkpoints and
    exported with `export_ema`."""
    timesteps: str = "batch"
    """Noise-level sampling: `batch` = one random training timestep per batch (reference), `sample` = one per
    sample (lower-variance gradients for small models)."""
    loss_weighting: str = "reference"
    """Per-timestep loss weight: `reference` = w(t) of docs/reference.md §4, `none` = 1, `x0` = 3 sigma² (sigma
    clamped at `SAMPLE_SIGMA_MIN`): the velocity error times sigma is the error of the clean sample x0 = x_t - sigma
    v, so this is the MSE of the predicted clean frames (times 3: sigma² averages 1/3 over
    uniform levels). A deliberate deviation for small models trained from scratch: with weight 1 the loss is
    dominated by low noise levels, where the velocity holds the unpredictable noise, and high noise levels, where
    the target must be copied from the context, learn slowly."""
    subject_loss_weight: float = 1.0
    """Weight of the loss on target latent cells that show a subject, relative to 1 on the rest (the loss stays a
    weighted mean); 1: unweighted, the reference's. Subjects cover a small part of a frame, so a plain MSE is
    mostly background. Needs data with subject masks (Flatland; HM-World folders preprocessed from tgt_mask.mp4)."""
    shift: float = 5.0
    """Time shift of the training schedule (Wan2.1: 5)."""
    precision: str = "auto"
    """`bf16` (autocast; FSDP: bf16 parameters with fp32 reduction), `fp32`, or `auto` = bf16 on CUDA and fp32
    on CPU (bf16 on CPU is slow)."""
    activation_checkpointing: bool = True
    """Recompute each DiT block in the backward pass instead of keeping its activations (reference)."""
    compile: bool = False
    """Compile the (wrapped) model with `torch.compile` (inductor) for the training steps; the first steps pay the
    compilation (about a minute for `flatland-tiny` on 2 CPU cores). Measured on the CPU for `flatland-tiny`
    (docs/training.md "Throughput"): 0.74x the eager step time. A runtime choice: `--resume` accepts a change."""
    parallel: str = "ddp"
    """Under torchrun with more than one process: `ddp` (replicated weights) or `fsdp` (sharded, FSDP2)."""
    device: str = "auto"
    """`cuda` (one GPU per process, by LOCAL_RANK), `cpu`, or `auto` = cuda when available."""
    seed: int = 0
    """Seed of the data order, the noise and a fresh model's weights."""
    num_workers: int = 0
    """DataLoader worker processes per training process."""
    save_every: int = 1000
    """Save a checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 2
    """Most recent checkpoints kept in out/checkpoints (older ones are deleted)."""
    keep_every: int = 0
    """Also save, and keep for good, a checkpoint at every multiple of this step count (0: none): milestones for
    a validation curve (`scripts/flatland_validate.py`); `keep_checkpoints` never deletes them."""
    resume: bool = False
    """Continue from the latest checkpoint in `out` (same config), bit for bit."""
    log_every: int = 10
    """Print and log loss, step time and samples/s every this many steps."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to out/tensorboard (only if the tensorboard package is installed)."""
    export: str | None = "hydra.safetensors"
    """File name (in `out`) of the inference checkpoint written at the end, in the released hydra.ckpt key
    layout (`.safetensors`, or `.ckpt`/`.pt`/`.pth` for a torch file); None: no export."""
    export_ema: bool = False
    """Export the EMA weights instead of the raw ones (needs `ema_decay` > 0)."""
    progress: bool = True
    """Show a progress bar (rank 0)."""

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.export = self.export or None  # "" (e.g. `--export ""`) means no export
        keeps = ("attention", "retrieval", "prediction")  # DiT overrides: None keeps the checkpoint's or preset's
        for name, allowed in FIELD_CHOICES.items():
            value = getattr(self, name)
            if name != "preset" and value not in allowed and not (value is None and name in keeps):
                raise ConfigError(f"{name}: expected one of {allowed}, got {value!r}")
        if (self.init is None) == (self.preset is None):
            raise ConfigError("exactly one of init (a checkpoint) and preset (fresh weights) is needed")
        shape = {k: getattr(self, k) for k in ("dim", "num_heads", "num_layers", "ffn_dim", "tokenizer_kernel")}
        shape = {k: v for k, v in shape.items() if v is not None}
        for name in shape:
            if self.init is not None:
                raise ConfigError(f"{name}: only for a fresh preset (a checkpoint's is fixed by its weights)")
        if self.tokenizer_kernel is not None:
            self.tokenizer_kernel = shape["tokenizer_kernel"] = int_triple(self.tokenizer_kernel, "tokenizer_kernel")
        for name, weights in (("qk_norm_init", "norms"), ("camera_init_std", "encoders")):  # fresh-preset inits
            value = getattr(self, name)
            if value is None:
                continue
            if self.init is not None:
                raise ConfigError(f"{name}: only for a fresh preset (a checkpoint brings its own {weights})")
            if not value > 0:
                raise ConfigError(f"{name}: expected > 0, got {value}")
        if self.copy_init and self.init is not None:
            raise ConfigError("copy_init: only for a fresh preset (a checkpoint brings its own attention weights)")
        if self.preset is not None and self.preset not in DIT_PRESETS:
            raise ConfigError(f"preset: unknown DiT preset {self.preset!r}; known: {', '.join(sorted(DIT_PRESETS))}")
        if self.preset is not None:
            dit_config(self.preset, **shape)  # the DiT's own checks of the resized preset, before any work
        if self.flatland is not None and self.flatland not in flatland_presets():
            raise ConfigError(
                f"data: unknown flatland preset {self.flatland!r}; known: {', '.join(sorted(flatland_presets()))}"
            )
        positive = ("steps", "batch_size", "grad_accum", "save_every", "log_every", "keep_checkpoints")
        for name in positive + ("flatland_samples", "flatland_codec_factor"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "num_workers", "keep_every", "flatland_chunk_frames"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name}: expected >= 0, got {getattr(self, name)!r}")
        if self.stop_after is not None and not 1 <= self.stop_after <= self.steps:
            raise ConfigError(f"stop_after: expected between 1 and steps ({self.steps}), got {self.stop_after}")
        if not self.subject_loss_weight > 0:
            raise ConfigError(f"subject_loss_weight: expected > 0, got {self.subject_loss_weight}")
        if not self.lr > 0 or self.weight_decay < 0 or self.grad_clip < 0 or not self.shift > 0:
            raise ConfigError("lr and shift must be > 0; weight_decay and grad_clip >= 0")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay: expected 0 <= decay < 1, got {self.ema_decay}")
        if self.export_ema and self.ema_decay == 0:
            raise ConfigError("export_ema needs ema_decay > 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas: expected two values in [0, 1), got {self.betas}")

    @property
    def flatland(self) -> str | None:
        """The Flatland preset of `flatland:PRESET` data, else None."""
        return flatland_source(self.data)

    @property
    def resolved_trainable(self) -> str:
        """`hydra` or `all` (`auto` resolved without reading files: a fresh model trains everything, a checkpoint
        its HyDRA modules; `training.loop.resolve_trainable` also reads what a checkpoint records)."""
        if self.trainable != "auto":
            return self.trainable
        return "all" if self.preset is not None else "hydra"

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def flatland_source(data: str | None) -> str | None:
    """`flatland:NAME` -> NAME; None for a folder (or no data)."""
    return data.removeprefix(FLATLAND_PREFIX) if data and data.startswith(FLATLAND_PREFIX) else None


def flatland_presets() -> tuple[str, ...]:
    from ..flatland.config import FLATLAND_PRESETS  # imported here: the CLI builds its parser from this module

    return tuple(FLATLAND_PRESETS)


# Fields that may differ between a run and its resumption without changing the result (a folder in `data` may
# move, `flatland:NAME` may not: `_resume` checks that; a different sample count is caught by the data-order check).
RESUMABLE_CHANGES = frozenset(
    ("data", "stop_after", "resume", "num_workers", "log_every", "tensorboard", "progress", "save_every", "compile")
    + ("keep_checkpoints", "keep_every", "export", "export_ema")
)


def field_defaults() -> dict:
    """{field: default} of `TrainConfig` in the JSON form a run's recorded config has (tuples as lists)."""
    return json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(TrainConfig)}))
