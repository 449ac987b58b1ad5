"""The training loop: flow matching on [clean context ; noisy target] latents (docs/reference.md §4-5).

Per optimiser step: draw the batch the `DataOrder` assigns to this process, draw one training timestep per
batch (reference) or per sample, noise *all* latents and then put the clean context frames back, predict the
velocity, and take the MSE against `noise - x0` on the target frames only, times the reference weight w(t).
Everything about distribution and memory (DDP/FSDP, activation checkpointing, bf16) is applied from outside
by `parallel.py`; checkpoints and the export are `checkpoint.py`'s.

`train(config)` trains on a preprocessed folder or on `flatland:PRESET` (Flatland clips encoded on the fly);
`train(config, dataset)` on any dataset whose items are the training tensors.
"""

from __future__ import annotations

import json
import math
import resource
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn
from tqdm import tqdm

from ..config import dit_config
from ..data.samples import SUBJECT_MASK, PreprocessedDataset
from ..errors import CheckpointError, ConfigError, InputError
from ..flatland.training import FlatlandChunkDataset, flatland_training_dataset
from ..flow import FlowMatchSchedule, round_timestep_bf16
from ..io_utils import write_text_atomic
from ..models.dit import SAMPLE_SIGMA_MIN, HydraDiT
from ..models.loading import load_dit
from . import checkpoint as ckpt
from .config import RESUMABLE_CHANGES, TrainConfig, field_defaults, flatland_source
from .data import DataOrder, batch_to_model_inputs, make_loader
from .parallel import (
    DistInfo,
    all_reduce_mean,
    any_process,
    gradient_sync,
    init_distributed,
    parallelize,
    shutdown_distributed,
    uses_autocast,
)

# The reference's trainable set (docs/reference.md §5): every parameter under these names.
HYDRA_TRAINABLE = ("self_attn.", "cam_encoder_", "projector.", "view_embedding.", "view_gate.")
"""The reference's trainable set (plus the `DiTConfig.aligned_view_*` modules, absent from the real model)."""
LOG_FILE = "train_log.jsonl"


def read_train_log(out: str | Path, up_to: int | None = None) -> list[dict]:
    """The records of `out`/train_log.jsonl (none when there is no file), one per logged step, in step order, up to
    step `up_to`: a resumed run logs the steps redone after its last checkpoint again, and the last record wins."""
    path = Path(out) / LOG_FILE
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    kept = {r["step"]: r for r in records if up_to is None or r["step"] <= up_to}
    return sorted(kept.values(), key=lambda r: r["step"])


def logged_step_seconds(log: list[dict]) -> float:
    """Training time a `read_train_log` list accounts for: each record's mean step time times the steps since the
    record before it."""
    return sum(r["step_seconds"] * (r["step"] - p["step"]) for p, r in zip([{"step": 0}, *log], log, strict=False))


@dataclass
class TrainResult:
    """What `train` did. `model` is the trained (unwrapped) model for a single-process run, else None."""

    step: int
    losses: list[float] = field(default_factory=list)
    checkpoint: Path | None = None
    export: Path | None = None
    model: HydraDiT | None = None
    stopped_by: int | None = None
    """The signal (SIGINT, SIGTERM) that stopped the run early, after its checkpoint was saved; None otherwise."""


# ------------------------------------------------------------------------------------------------ model


def build_model(config: TrainConfig, channels: int | None, text_dim: int | None) -> HydraDiT:
    """The model to train, float32 on the CPU: from `config.init` (Wan2.1 or HyDRA file) or a fresh preset.

    A fresh preset takes its latent channels and text width from the data; a checkpoint must match them (not
    checked when they are None).
    """
    names = ("attention", "retrieval", "prediction", "tokenizer_kernel", "top_k", "rope_yaw_columns")
    names += ("rope_head_velocity", "rope_yaw_heads")
    names += ("dim", "num_heads", "num_layers", "ffn_dim")  # sizes: fresh presets only (`TrainConfig`)
    overrides = {k: getattr(config, k) for k in names if getattr(config, k) is not None}
    for name in ("aligned_view_input", "aligned_view_gate"):  # False keeps the checkpoint's (or the preset's: off)
        if getattr(config, name):
            overrides[name] = True
    if config.preset is not None:
        torch.manual_seed(config.seed)
        model = HydraDiT(dit_config(config.preset, in_dim=channels, out_dim=channels, text_dim=text_dim, **overrides))
        model.init_weights()
        with torch.no_grad():
            for block in model.blocks:
                if config.qk_norm_init is not None:
                    block.self_attn.norm_q.weight.fill_(config.qk_norm_init)
                    block.self_attn.norm_k.weight.fill_(config.qk_norm_init)
                if config.camera_init_std is not None:  # the seeded global RNG, after init_weights: reproducible
                    for encoder in (block.cam_encoder_con, block.cam_encoder_tgt):
                        encoder.weight.normal_(0.0, config.camera_init_std)
                if config.copy_init:
                    copy_init(block)
    else:
        model = load_dit(config.init, dtype=torch.float32, seed=config.seed, **overrides)
        if channels is not None and (model.cfg.in_dim, model.cfg.text_dim) != (channels, text_dim):
            raise ConfigError(
                f"{config.init}: model takes {model.cfg.in_dim} latent channels and text width {model.cfg.text_dim}, "
                f"the data has {channels} and {text_dim}"
            )
    return model.train()


def copy_init(block) -> None:
    """`TrainConfig.copy_init` for one block: keys = queries, target camera = context camera, tokenizer = mean."""
    attention = block.self_attn
    attention.k.load_state_dict(attention.q.state_dict())
    block.cam_encoder_tgt.load_state_dict(block.cam_encoder_con.state_dict())
    conv = attention.tokenizer.conv
    conv.weight.zero_()
    conv.bias.zero_()
    channels = torch.arange(conv.weight.shape[0])
    conv.weight[channels, channels] = 1.0 / math.prod(conv.kernel_size)


def set_trainable(model: HydraDiT, mode: str) -> dict[str, nn.Parameter]:
    """Freeze all but the trainable set (`hydra`: the reference's; `all`); returns {name: trainable param}.

    The memory tokenizer is used only by `memory` attention with top_k > 0; otherwise it stays frozen (it would
    get no gradient, which DDP rejects).
    """
    tokenizer_used = model.cfg.attention == "memory" and model.cfg.top_k > 0
    trainable = {}
    for name, param in model.named_parameters():
        wanted = mode == "all" or any(part in name for part in HYDRA_TRAINABLE)
        wanted = wanted and (tokenizer_used or ".self_attn.tokenizer." not in name)
        param.requires_grad_(wanted)
        if wanted:
            trainable[name] = param
    return trainable


# ------------------------------------------------------------------------------------------------- loss


def flow_matching_loss(
    model: nn.Module,
    batch: dict[str, Tensor],
    schedule: FlowMatchSchedule,
    noise_generator: torch.Generator,
    *,
    per_sample: bool = False,
    weighting: str = "reference",
    subject_weight: float = 1.0,
    autocast_dtype: torch.dtype | None = None,
) -> Tensor:
    """Flow-matching loss of one batch (docs/reference.md §5); scalar float32."""
    latents, text, cam_context, cam_target, num_context = batch_to_model_inputs(batch)
    latents = latents.float()
    device, batch_size = latents.device, latents.shape[0]
    # 1. noise level: one training timestep per batch (reference) or per sample
    ids = torch.randint(
        schedule.num_train_timesteps, (batch_size if per_sample else 1,), generator=noise_generator, device=device
    ).cpu()
    sigma = schedule.train_sigmas[ids].expand(batch_size).to(device)  # (B,)
    # 2. noise everything, then put the clean context back: only target frames are denoised
    noise = torch.randn(latents.shape, generator=noise_generator, device=device, dtype=torch.float32)
    noisy = schedule.add_noise(latents, noise, sigma)
    noisy[:, :, :num_context] = latents[:, :, :num_context]
    target = schedule.velocity_target(latents, noise)[:, :, num_context:]  # (B, C, Ft, h, w)
    # 3. predict; the DiT sees the timestep rounded to bf16, as in the reference's training and sampling
    timestep = round_timestep_bf16(schedule.train_timesteps[ids]).to(device)
    with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        prediction = model(noisy, timestep, text, cam_context, cam_target, num_context_frames=num_context)
    # 4. MSE on the target frames (a weighted mean with subject cells weighted `subject_weight`), weighted by w(t)
    error = (prediction[:, :, num_context:].float() - target).pow(2)  # (B, C, Ft, h, w)
    if subject_weight == 1.0:
        error = error.mean(dim=(1, 2, 3, 4))  # (B,)
    else:
        if SUBJECT_MASK not in batch:
            raise InputError(f"batch: subject_loss_weight needs subject masks ({SUBJECT_MASK}); a sample has none")
        cells = 1.0 + (subject_weight - 1.0) * batch[SUBJECT_MASK][:, None].to(device, torch.float32)  # (B,1,Ft,h,w)
        error = (error * cells).sum(dim=(1, 2, 3, 4)) / (cells.sum(dim=(1, 2, 3, 4)) * error.shape[1])
    if weighting == "reference":
        weight = schedule.train_weights[ids].to(device)
    elif weighting == "x0":  # velocity error x sigma = clean-sample error (`TrainConfig.loss_weighting`)
        weight = 3.0 * sigma.clamp(min=SAMPLE_SIGMA_MIN).pow(2)
    else:
        weight = torch.ones_like(error)
    return (error * weight.expand(batch_size)).mean()


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier for optimiser step `step` (0-based): linear warm-up, then constant or cosine."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "cosine":
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


# ------------------------------------------------------------------------------------------------- data


def training_dataset(config: TrainConfig):
    """What `config.data` names: a preprocessed folder, or `flatland:PRESET` clips encoded on the fly.

    Flatland's null text is as wide as the preset's text input (an `init` checkpoint: `flatland-tiny`'s).
    """
    if config.flatland is None:
        return PreprocessedDataset(config.data)
    preset = dit_config(config.preset or "flatland-tiny")
    return flatland_training_dataset(
        config.flatland,
        config.flatland_samples,
        config.flatland_seed,
        factor=config.flatland_codec_factor,
        text_dim=preset.text_dim,
        chunk_frames=config.flatland_chunk_frames,
        kernel=(config.tokenizer_kernel or preset.tokenizer_kernel)[0],
    )


# --------------------------------------------------------------------------------------------- the run


@dataclass
class _Run:
    """Everything a running training holds."""

    config: TrainConfig
    info: DistInfo
    raw: HydraDiT
    model: nn.Module
    params: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer
    ema: dict[str, Tensor] | None
    noise: torch.Generator
    order: DataOrder
    dataset: object
    schedule: FlowMatchSchedule
    autocast_dtype: torch.dtype | None
    trainable: str
    """The resolved trainable set (`resolve_trainable`), recorded in checkpoints and exports."""
    step: int = 0
    stop_requested: bool = False
    stop_signal: int | None = None


def _setup(config: TrainConfig, dataset, info: DistInfo) -> _Run:
    # 1. data
    dataset = dataset if dataset is not None else training_dataset(config)
    first = dataset[0]
    if config.subject_loss_weight != 1.0 and SUBJECT_MASK not in first:
        raise ConfigError(
            "subject_loss_weight: the data has no subject masks (Flatland data, or an HM-World folder preprocessed "
            "from tgt_mask.mp4 by this version, has them)"
        )
    order = DataOrder(len(dataset), config.batch_size, config.seed, info.rank, info.world_size)
    # 2. model, trainable set, then distribution and memory savers from outside
    raw = build_model(config, first["context_latents"].shape[0], first["text"].shape[-1])
    chunks = getattr(dataset, "dataset", None)
    if isinstance(chunks, FlatlandChunkDataset):  # history pre-selected in units of the model's tokenizer kernel
        chunks.set_kernel(raw.cfg.tokenizer_kernel[0])
    trainable = resolve_trainable(config)
    params = set_trainable(raw, trainable)
    if not params:
        raise ConfigError("no trainable parameters")
    if info.is_main:
        count = sum(p.numel() for p in params.values())
        total = sum(p.numel() for p in raw.parameters())
        print(f"train: {count:,} of {total:,} parameters train (trainable={trainable})", flush=True)
    bf16 = config.precision == "bf16" or (config.precision == "auto" and info.device.type == "cuda")
    raw.to(info.device)
    model = parallelize(
        raw, info, mode=config.parallel, activation_checkpointing=config.activation_checkpointing, bf16=bf16
    )
    params = {name: param for name, param in raw.named_parameters() if name in params}  # FSDP swapped them
    if config.compile:  # the training steps run the compiled wrapper; weights, checkpoints and exports use `raw`
        model = torch.compile(model)
    # 3. optimiser, EMA, noise stream of this rank
    optimizer = torch.optim.AdamW(
        list(params.values()), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    ema = {n: p.detach().clone() for n, p in params.items()} if config.ema_decay > 0 else None
    noise = torch.Generator(info.device).manual_seed(
        int(np.random.SeedSequence([config.seed, info.rank]).generate_state(1)[0])
    )
    torch.manual_seed(config.seed + info.rank)
    return _Run(
        config=config,
        info=info,
        raw=raw,
        model=model,
        params=params,
        optimizer=optimizer,
        ema=ema,
        noise=noise,
        order=order,
        dataset=dataset,
        schedule=FlowMatchSchedule(shift=config.shift),
        autocast_dtype=torch.bfloat16 if bf16 and uses_autocast(config.parallel, info) else None,
        trainable=trainable,
    )


def _resume(run: _Run) -> None:
    """Load the latest checkpoint of `out` if `resume`; refuse to overwrite an existing run otherwise."""
    config, latest = run.config, ckpt.intact_checkpoint(run.config.out, warn=run.info.is_main)
    if latest is None:
        if config.resume and run.info.is_main:
            print(f"train: no checkpoint in {config.out}; starting from step 0")
        return
    if not config.resume:
        raise ConfigError(f"{config.out}: holds checkpoints already; pass --resume to continue or use another --out")
    _, record = ckpt.read_checkpoint(latest)
    saved = {k: v for k, v in record["config"].items() if k not in RESUMABLE_CHANGES}
    current = {k: v for k, v in json.loads(json.dumps(config.to_dict())).items() if k not in RESUMABLE_CHANGES}
    # Paths name the same file however they are spelled: `out` is where the checkpoint was found, `init` resolved.
    for fields in (saved, current):
        fields.pop("out", None)
    if saved.get("init") and current.get("init") and Path(saved["init"]).resolve() == Path(current["init"]).resolve():
        saved["init"] = current["init"]
    # A field added after the run started is taken at its default (what the run used without it).
    defaults = field_defaults()
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k, defaults.get(k)) != current.get(k))
    if flatland_source(record["config"].get("data")) != config.flatland:  # a folder may move, Flatland may not
        changed.append("data")
    if changed:
        raise ConfigError(f"{latest}: the run was started with other settings ({', '.join(changed)}); cannot resume")
    record = ckpt.load_checkpoint(
        latest, params=run.params, optimizer=run.optimizer, ema=run.ema, noise=run.noise, info=run.info
    )
    run.order.load_state_dict(record["data_order"])
    run.step = int(record["step"])
    if run.info.is_main:
        print(f"train: resumed from {latest} at step {run.step}")


def _train_step(run: _Run, loader) -> float:
    """One optimiser step (with gradient accumulation); returns this process's loss."""
    config, total = run.config, 0.0
    run.optimizer.zero_grad(set_to_none=True)
    for micro in range(config.grad_accum):
        batch = {k: v.to(run.info.device, non_blocking=True) for k, v in next(loader).items()}
        run.order.micro_steps += 1
        with gradient_sync(run.model, micro == config.grad_accum - 1):
            loss = flow_matching_loss(
                run.model,
                batch,
                run.schedule,
                run.noise,
                per_sample=config.timesteps == "sample",
                weighting=config.loss_weighting,
                subject_weight=config.subject_loss_weight,
                autocast_dtype=run.autocast_dtype,
            )
            (loss / config.grad_accum).backward()
        total += loss.item() / config.grad_accum
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(list(run.params.values()), config.grad_clip)
    for group in run.optimizer.param_groups:
        group["lr"] = config.lr * lr_factor(run.step, config)
    run.optimizer.step()
    if run.ema is not None:
        with torch.no_grad():
            for name, param in run.params.items():
                run.ema[name].lerp_(param.detach(), 1 - config.ema_decay)
    run.step += 1
    return total


def _save(run: _Run) -> Path:
    state = {
        "config": run.config.to_dict(),
        "data_order": run.order.state_dict(),
        "trainable": run.trainable,
    }
    return ckpt.save_checkpoint(
        run.config.out,
        step=run.step,
        params=run.params,
        optimizer=run.optimizer,
        ema=run.ema,
        noise=run.noise,
        state=state,
        info=run.info,
        keep=run.config.keep_checkpoints,
        milestone=run.config.keep_every,
    )


def resolve_trainable(config: TrainConfig) -> str:
    """`hydra` or `all`. `auto`: all for a fresh preset; for a checkpoint, the set it was trained with when its
    metadata records one (exports of `hydra-wm train` do: a Flatland model trained from scratch continues with
    all its weights), else hydra (the reference's, for Wan2.1 and HyDRA's released files)."""
    if config.trainable != "auto" or config.init is None:
        return config.resolved_trainable
    recorded = trained_set(config.init)
    return recorded if recorded in ("hydra", "all") else "hydra"


def trained_set(path: str | Path) -> str | None:
    """The trainable set a `.safetensors` export of `hydra-wm train` records (None: not recorded)."""
    if Path(path).suffix != ".safetensors" or not Path(path).is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            record = json.loads((handle.metadata() or {}).get("hydra_wm_train", "{}"))
    except (OSError, ValueError, SafetensorError):
        return None  # load_dit reports an unreadable file with its own one-line error
    return record.get("trainable") if isinstance(record, dict) else None


def _export_metadata(model: HydraDiT, **train) -> dict[str, str]:
    """Every DiTConfig field as a string (`load_dit` reads them back, attention mode included) plus `train`."""
    cfg = model.cfg.to_dict()
    return {
        **{key: str(value) for key, value in cfg.items()},
        "hydra_wm_config": json.dumps(cfg),
        "hydra_wm_train": json.dumps(train),
    }


def _export(run: _Run) -> Path | None:
    metadata = _export_metadata(run.raw, step=run.step, ema=run.config.export_ema, trainable=run.trainable)
    ema = run.ema if run.config.export_ema else None
    return ckpt.export_model(run.raw, Path(run.config.out) / run.config.export, run.info, ema=ema, metadata=metadata)


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, use_ema: bool = True) -> Path:
    """Write the model of a training checkpoint (a `step_*.safetensors` file, or a run folder: its latest) to `out`.

    The model is rebuilt as the run built it (its preset or init checkpoint), then the checkpoint's trainable
    weights (their EMA when the run kept one and `use_ema`) replace the initial ones. The file has the same
    layout and config metadata as the export at the end of a finished run, so an interrupted or `stop_after`
    run can be used (and shipped) without training to `steps`.
    """
    path = Path(checkpoint)
    if path.is_dir():
        found = ckpt.intact_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path}: no training checkpoint (expected {ckpt.CHECKPOINT_DIR}/step_*.safetensors)")
        path = found
    tensors, record = ckpt.read_checkpoint(path)
    try:
        config = TrainConfig(**record["config"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: state record has no usable training config ({exc})") from None
    names = [key.removeprefix("model.") for key in tensors if key.startswith("model.")]
    if config.preset is not None:  # a fresh preset takes its widths from the trained embeddings
        if "model.patch_embedding.weight" not in tensors or "model.text_embedding.0.weight" not in tensors:
            raise CheckpointError(f"{path}: fresh-preset run without patch/text embedding weights in the checkpoint")
        model = build_model(
            config, tensors["model.patch_embedding.weight"].shape[1], tensors["model.text_embedding.0.weight"].shape[1]
        )
    else:  # the init checkpoint supplies the frozen weights (and the widths)
        model = build_model(config, None, None)
    ema = use_ema and all(f"ema.{name}" in tensors for name in names)
    state = {name: tensors[f"{'ema' if ema else 'model'}.{name}"] for name in names}
    unknown = sorted(set(state) - set(model.state_dict()))
    if unknown:
        raise CheckpointError(f"{path}: weights the model does not have: {', '.join(unknown[:5])}")
    model.load_state_dict(state, strict=False)
    trainable = record.get("trainable") or resolve_trainable(config)
    metadata = _export_metadata(model, step=record.get("step"), ema=ema, checkpoint=path.name, trainable=trainable)
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    return ckpt.export_model(model, out, info, metadata=metadata)


class _Logger:
    """Rank 0: progress bar, printed lines, out/train_log.jsonl and (optional) TensorBoard."""

    def __init__(self, run: _Run):
        self.enabled = run.info.is_main
        self.path = Path(run.config.out) / LOG_FILE
        self.bar = tqdm(
            total=run.config.steps,
            initial=run.step,
            desc="train",
            unit="step",
            disable=not (self.enabled and run.config.progress),
        )
        self.writer = None
        if self.enabled and run.config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(run.config.out) / "tensorboard"))
            except ImportError:
                warnings.warn("tensorboard is not installed; logging to train_log.jsonl only", stacklevel=2)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        line = (
            f"step {record['step']}  loss {record['loss']:.4f}  lr {record['lr']:.2e}  "
            f"{record['step_seconds']:.3f} s/step  {record['samples_per_second']:.1f} samples/s  "
            f"peak {record['peak_memory_gb']:.2f} GB"
        )
        self.bar.write(line) if not self.bar.disable else print(line, flush=True)
        if self.writer is not None:
            for key in ("loss", "lr", "step_seconds", "samples_per_second"):
                self.writer.add_scalar(key, record[key], record["step"])

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocator peak, or the resident-set peak on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def _loop(run: _Run, logger: _Logger) -> list[float]:
    config, info = run.config, run.info
    end = config.stop_after or config.steps
    loader, losses, window = make_loader(run.dataset, run.order, config.num_workers), [], []
    global_batch = config.batch_size * config.grad_accum * info.world_size
    start = time.perf_counter()
    try:
        while run.step < end:
            loss = _train_step(run, loader)
            losses.append(loss)
            window.append(loss)
            logger.bar.update(1)
            logger.bar.set_postfix(loss=f"{loss:.4f}")
            if run.step % config.log_every == 0 or run.step == end:
                elapsed, mean_loss = time.perf_counter() - start, all_reduce_mean(float(np.mean(window)), info)
                logger.log(
                    {
                        "step": run.step,
                        "loss": mean_loss,
                        "lr": run.optimizer.param_groups[0]["lr"],
                        "step_seconds": elapsed / len(window),
                        "samples_per_second": global_batch * len(window) / elapsed,
                        "peak_memory_gb": peak_memory_gb(info.device),
                    }
                )
                window, start = [], time.perf_counter()
            stop = any_process(run.stop_requested, info)
            milestone = config.keep_every and run.step % config.keep_every == 0
            if run.step % config.save_every == 0 or milestone or run.step == end or stop:
                _save(run)
            if stop:
                if info.is_main:
                    print(f"train: stopped by signal at step {run.step}; continue with --resume")
                break
    finally:
        del loader  # stop DataLoader workers before the process group goes
    return losses


def _on_signal(run: _Run):
    def handler(signum, frame):
        run.stop_requested, run.stop_signal = True, signum

    return handler


def train(config: TrainConfig, dataset=None) -> TrainResult:
    """Train as `config` says, on `dataset` (items = training tensors) or the preprocessed `config.data`.

    Under torchrun every process calls this; it joins (and leaves) the process group itself.
    """
    if dataset is None and config.data is None:
        raise ConfigError("train: no data (give data, a preprocessed folder, or a dataset object)")
    created = not torch.distributed.is_initialized()
    info = init_distributed(config.device)
    handlers, run = {}, None
    try:
        run = _setup(config, dataset, info)
        _resume(run)
        if info.is_main:
            write_text_atomic(Path(config.out) / "config.json", json.dumps(config.to_dict(), indent=1))
        if threading.current_thread() is threading.main_thread():
            handlers = {s: signal.signal(s, _on_signal(run)) for s in (signal.SIGTERM, signal.SIGINT)}
        logger = _Logger(run)
        try:
            losses = _loop(run, logger)
        finally:
            logger.close()
        finished = run.step >= config.steps and config.export is not None
        export = _export(run) if finished else None
        last = ckpt.latest_checkpoint(config.out)
        return TrainResult(run.step, losses, last, export, None if info.distributed else run.raw, run.stop_signal)
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
        run = None  # release DDP/FSDP before leaving the process group (see shutdown_distributed)
        shutdown_distributed(created)
