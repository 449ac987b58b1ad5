"""Camera-controlled video continuation with HyDRA: condition clip + cameras + caption -> continuation.

`HydraPipeline` runs the reference's inference (docs/reference.md §3) as numbered steps around one denoising loop
(`denoise`), with the reference's defects fixed:

* the condition latents are never decoded (the output's condition frames are the input frames);
* context and target lengths are independent (the reference splits them by the target length);
* classifier-free guidance runs both passes as one batch of 2 (the reference's head breaks for batch > 1);
* a training checkpoint wrapped as ``{"state_dict": ...}`` loads (`load_dit` unwraps it);
* the attention is the one `torch` SDPA dispatch, never a backend chosen by what is installed.

Each model is loaded only for its step and released after (`offload.ModelSlots`), and every step runs over
all samples before the next model is loaded, so the three models are never resident together.

`Rollout` continues a clip chunk after chunk along a camera path of any length, each chunk one run of `denoise`
conditioned on frames chosen from a growing memory bank (`rollout.py`, docs/rollout.md);
`HydraPipeline.rollout` starts one with the Wan2.1 models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm import tqdm

from .config import dit_config
from .data.cameras import relative_vectors
from .errors import CheckpointError, InputError
from .flow import FlowMatchSchedule
from .io_utils import atomic_path
from .models.attention import AttentionHook
from .models.loading import EncoderFiles, load_dit
from .models.memory import Retrieval, aligned_view_latents
from .models.state_dicts import WAN21_URL
from .models.text_encoder import WAN_NEGATIVE_PROMPT, encode_prompts, load_text_encoder, load_tokenizer
from .models.vae import load_vae, vae_config
from .offload import OFFLOAD_MODES, ModelSlots, enable_block_offload
from .rollout import ChunkRecord, MemoryBank, RolloutConfig, chunk_seed, retrieved_bank_frames, select_history

HYDRA_URL = "https://huggingface.co/H-EmbodVis/HyDRA"
DIT_PATTERN = "diffusion_pytorch_model*.safetensors"
_VAE, _DIT = vae_config("wan2.1"), dit_config("wan2.1-t2v-1.3b")  # the released model's VAE and DiT
LATENT_STRIDE = _VAE.temporal_factor
"""Video frames per latent frame after the first (4: every VAE `load_vae` accepts compresses time 4x)."""
CAMERA_DIM = _DIT.camera_dim
"""Numbers per relative camera (12: the top 3x4 of the pose), one camera per latent frame."""
SIZE_MULTIPLE = _VAE.spatial_factor * _DIT.patch_size[1]
"""Frame sizes are multiples of this (16): 8x spatial VAE compression, then the DiT's 2x2 patches."""
MIN_SIZE = SIZE_MULTIPLE * _DIT.tokenizer_kernel[1]
"""Smallest frame size (32): HyDRA's memory tokenizer halves the token grid again, so at least 2 tokens."""


def latent_frames(frames: int) -> int:
    """Latent frames of a clip of `frames` = 1 + 4k video frames (the first frame is encoded on its own)."""
    return (frames - 1) // LATENT_STRIDE + 1


# ------------------------------------------------------------------------------------------------ inputs


@dataclass
class GenerationConfig:
    """Sampling settings, one field per `hydra-wm generate` option; defaults are the reference's
    (docs/reference.md §3)."""

    height: int = 480
    """Frame height in pixels (multiple of 16)."""
    width: int = 832
    """Frame width in pixels (multiple of 16)."""
    context_frames: int = 77
    """Condition frames read from the input video (4k + 1)."""
    target_frames: int = 77
    """Frames to generate (4k + 1)."""
    num_steps: int = 50
    """Denoising steps."""
    guidance_scale: float = 5.0
    """Classifier-free guidance weight; 1 skips the negative-prompt pass."""
    shift: float = 5.0
    """Flow-matching time shift."""
    seed: int = 42
    """Seed of the initial noise (CPU generator, float32), the same for every sample."""
    negative_prompt: str = WAN_NEGATIVE_PROMPT
    """Prompt of the unconditional pass (Wan2.1's standard negative prompt)."""
    cfg_batch: bool = True
    """Run the prompt and negative-prompt passes as one batch of 2 (faster; more activation memory)."""
    text_length: int = 512
    """Tokens per prompt (padded or truncated)."""
    vae_tiled: bool = False
    """Encode and decode in overlapping spatial tiles (less memory for large frames)."""

    def __post_init__(self) -> None:
        for name in ("context_frames", "target_frames"):
            value = getattr(self, name)
            if value < 1 or (value - 1) % LATENT_STRIDE:
                s = LATENT_STRIDE
                raise InputError(f"{name}: expected {s}k+1 frames (1, {1 + s}, {1 + 2 * s}, ...), got {value}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value % SIZE_MULTIPLE or value < MIN_SIZE:
                raise InputError(f"{name}: expected a multiple of {SIZE_MULTIPLE} of at least {MIN_SIZE}, got {value}")
        for name in ("num_steps", "text_length"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: expected at least 1, got {getattr(self, name)}")
        if not math.isfinite(self.guidance_scale) or not self.shift > 0:
            raise InputError(f"guidance_scale {self.guidance_scale} / shift {self.shift}: expected finite, shift > 0")

    @property
    def context_latent_frames(self) -> int:
        return latent_frames(self.context_frames)

    @property
    def target_latent_frames(self) -> int:
        return latent_frames(self.target_frames)

    @property
    def use_cfg(self) -> bool:
        return self.guidance_scale != 1.0


@dataclass
class Sample:
    """One generation request."""

    name: str
    prompt: str
    condition: Tensor
    """(3, context_frames, H, W) condition clip in [-1, 1]."""
    cam_context: Tensor
    """(context latent frames, 12) relative cameras of the condition clip."""
    cam_target: Tensor
    """(target latent frames, 12) relative cameras of the frames to generate."""


@dataclass
class GenerationResult:
    name: str
    video: Tensor
    """(3, context_frames + target_frames, H, W) in [-1, 1]: the condition frames, then the generated ones."""
    context_latents: Tensor
    """(1, C, Fc, H/8, W/8) normalised VAE latents of the condition clip."""
    target_latents: Tensor
    """(1, C, Ft, H/8, W/8) generated latents."""
    retrieval: RetrievalRecord | None = None


@dataclass
class Conditioning:
    """Everything the denoising loop conditions on, batched (B samples)."""

    context_latents: Tensor
    """(B, C, Fc, h, w) clean latents of the condition clip."""
    text: Tensor
    """(B, Lt, text_dim) prompt embeddings."""
    negative_text: Tensor | None
    """(B, Lt, text_dim) negative-prompt embeddings, or None for no guidance."""
    cam_context: Tensor
    """(B, Fc, 12)"""
    cam_target: Tensor
    """(B, Ft, 12)"""


@dataclass
class ViewSnap:
    """Sampling with view snapping: at every step, wherever the model's clean-sample estimate is already within
    `tolerance` of the aligned context frame (`models.memory.aligned_view_latents`), the estimate becomes that
    frame exactly.

    A deliberate deviation for the built-in Flatland models (docs/deviations.md), off unless asked for: it locks in
    what the model's memory recalled, value by value, and leaves to the model whatever it paints differently
    (subjects that moved, views no context frame showed). It copies nothing the model did not already come close
    to: a model without memory gains little from it (model card)."""

    views: Tensor
    """(B, C, Ft, h, w) latents: for each target frame, the context frame of the closest viewing direction."""
    tolerance: float
    """Largest |estimate - view| (latent units) that snaps."""

    @classmethod
    def aligned(cls, cond: Conditioning, tolerance: float, patch_frames: int = 1) -> ViewSnap:
        """Snapping to the aligned views of `cond`'s context frames (`models.memory.aligned_view_latents`)."""
        views = aligned_view_latents(cond.context_latents, cond.cam_context, cond.cam_target, patch_frames)
        return cls(views, tolerance)

    def __call__(self, x0: Tensor) -> Tensor:
        views = self.views.to(x0)  # no copy inside `denoise`, which moved them once
        return torch.where((x0 - views).abs() < self.tolerance, views, x0)


def check_sample(sample: Sample, config: GenerationConfig) -> None:
    """Raise a one-line InputError unless the sample's tensors match `config`."""
    expected = (3, config.context_frames, config.height, config.width)
    if tuple(sample.condition.shape) != expected:
        raise InputError(f"{sample.name}: condition video {tuple(sample.condition.shape)}, expected {expected}")
    for label, cams, rows, frames in (
        ("context", sample.cam_context, config.context_latent_frames, config.context_frames),
        ("target", sample.cam_target, config.target_latent_frames, config.target_frames),
    ):
        if tuple(cams.shape) != (rows, CAMERA_DIM):
            raise InputError(
                f"{sample.name}: {label} cameras {tuple(cams.shape)}, expected ({rows}, {CAMERA_DIM}): one per "
                f"latent frame of {frames} frames"
            )
    if not sample.prompt.strip():
        raise InputError(f"{sample.name}: empty prompt")


# ----------------------------------------------------------------------------------------- checkpoint files


@dataclass(frozen=True)
class ModelFiles:
    """Paths of the Wan2.1 files and the HyDRA checkpoint."""

    vae: Path
    text_encoder: Path
    tokenizer: Path
    dit: Path | None
    """Base Wan2.1 DiT; not read when `hydra` is given (the HyDRA checkpoint holds every DiT weight)."""
    hydra: Path | None

    @classmethod
    def find(cls, ckpt_dir: str | Path, hydra_ckpt: str | Path | None = None) -> ModelFiles:
        """Locate every file; raise one CheckpointError listing all that are missing and where to get them.

        The encoders are found as `hydra-wm preprocess` finds them (`EncoderFiles`)."""
        root = Path(ckpt_dir)
        encoders = EncoderFiles.locate(root)
        dits = sorted(root.glob(DIT_PATTERN)) if root.is_dir() else []
        hydra = Path(hydra_ckpt) if hydra_ckpt is not None else None
        wan_missing = encoders.missing()
        if hydra is None and not dits:
            wan_missing.append(f"{root / 'diffusion_pytorch_model.safetensors'} (DiT)")
        problems = [f"{', '.join(wan_missing)} (from {WAN21_URL})"] if wan_missing else []
        if hydra is not None and not hydra.is_file():
            problems.append(f"{hydra} (from {HYDRA_URL})")
        if problems:
            raise CheckpointError("missing checkpoint files: " + "; ".join(problems) + "; nothing is downloaded")
        if hydra is None and len(dits) > 1:
            raise CheckpointError(
                f"{root}: {len(dits)} DiT shards ({dits[0].name}, ...); only a single-file DiT (Wan2.1 1.3B) "
                "is supported"
            )
        return cls(encoders.vae, encoders.text_encoder, encoders.tokenizer, dits[0] if dits else None, hydra)


# ------------------------------------------------------------------------------------ recording retrievals


@dataclass
class RetrievalRecord:
    """Retrievals of one generated sample, every step and block."""

    indices: Tensor
    """(S, Nb, P, F, k) int64 chosen memory frames, best first."""
    scores: Tensor
    """(S, Nb, P, F, k) float32 relevance scores of the chosen frames."""
    valid: Tensor
    """(S, Nb, P, F, k) bool, False for unused slots (fewer eligible memory frames than k)."""
    num_context_frames: int
    """Latent context frames Fc: query frames Fc.. are the target frames."""
    num_memory_frames: int
    """Memory frames Fm (columns of the heat map)."""
    frames_per_memory: int
    """Latent frames summarised by one memory frame (tokenizer temporal stride)."""
    timesteps: list[float] = field(default_factory=list)
    """Timestep of each recorded step (as the DiT saw it)."""

    def counts(self, pass_index: int = 0) -> Tensor:
        """(S, Nb, F, Fm) int: 1 where query frame f retrieved memory frame m at that step and block."""
        idx = self.indices[:, :, pass_index]  # (S, Nb, F, k)
        ok = self.valid[:, :, pass_index].long()
        out = torch.zeros(*idx.shape[:-1], self.num_memory_frames, dtype=torch.long)
        return out.scatter_add_(-1, idx.long(), ok)


class RetrievalRecorder:
    """The sampler's hook for recording retrievals: ``denoise(..., on_step=recorder)`` calls
    ``recorder(step, timestep, retrievals)`` with one entry per block; `record` stacks them into a
    `RetrievalRecord` with tensors of shape (S steps, Nb blocks, P passes, F frames, k); pass 0 is the prompt pass,
    pass 1 (with classifier-free guidance) the negative-prompt pass."""

    def __init__(self, passes: int) -> None:
        self.passes = passes
        self.steps: list[tuple[Tensor, Tensor, Tensor]] = []
        self.timesteps: list[float] = []
        self.num_memory_frames = 0

    def __call__(self, step: int, timestep: float, retrievals: list[Retrieval | None]) -> None:
        used = [r for r in retrievals if r is not None]
        if not used:
            return
        self.num_memory_frames = used[0].all_scores.shape[-1]
        # Rows of each Retrieval are [prompt samples ; negative samples]; one sample per pass here.
        stack = lambda name: torch.stack([getattr(r, name).detach().cpu() for r in used])  # (Nb, P*B, F, k)
        self.steps.append((stack("indices"), stack("scores").float(), stack("valid")))
        self.timesteps.append(float(timestep))

    def record(self, num_context_frames: int, frames_per_memory: int) -> RetrievalRecord | None:
        if not self.steps:
            return None
        indices, scores, valid = (torch.stack(parts) for parts in zip(*self.steps, strict=True))
        return RetrievalRecord(
            indices=indices,
            scores=scores,
            valid=valid,
            num_context_frames=num_context_frames,
            num_memory_frames=self.num_memory_frames,
            frames_per_memory=frames_per_memory,
            timesteps=self.timesteps,
        )


def save_retrieval(path: str | Path, record: RetrievalRecord) -> None:
    """Write indices, scores and validity as safetensors (layout described in the file's metadata)."""
    passes = ["prompt", "negative prompt"][: record.indices.shape[2]]
    metadata = {
        "layout": "(steps, blocks, passes, query frames, k); query frames are latent frames, context first",
        "passes": json.dumps(passes),
        "num_context_frames": str(record.num_context_frames),
        "num_memory_frames": str(record.num_memory_frames),
        "frames_per_memory": str(record.frames_per_memory),
        "memory_frame": "memory frame j summarises latent frames frames_per_memory*j .. frames_per_memory*(j+1)-1",
        "timesteps": json.dumps(record.timesteps),
    }
    tensors = {
        "indices": record.indices.to(torch.int32).contiguous(),
        "scores": record.scores.contiguous(),
        "valid": record.valid.contiguous(),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_retrieval(path: str | Path) -> RetrievalRecord:
    """Read a file `save_retrieval` wrote; `InputError` naming the file when it is not one."""
    from safetensors import safe_open

    from .io_utils import safetensors_problem

    problem = safetensors_problem(path)
    if problem:
        raise InputError(f"{path}: {problem}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in ("indices", "scores", "valid")}
            record = RetrievalRecord(
                indices=tensors["indices"].long(),
                scores=tensors["scores"].float(),
                valid=tensors["valid"].bool(),
                num_context_frames=int(meta["num_context_frames"]),
                num_memory_frames=int(meta["num_memory_frames"]),
                frames_per_memory=int(meta["frames_per_memory"]),
                timesteps=[float(t) for t in json.loads(meta.get("timesteps", "[]"))],
            )
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a retrieval record ({type(exc).__name__}: {exc})") from None
    shapes = {tuple(t.shape) for t in (record.indices, record.scores, record.valid)}
    if len(shapes) != 1 or record.indices.ndim != 5:
        raise InputError(f"{path}: indices, scores and valid must share one (steps, blocks, passes, frames, k) shape")
    return record


# ------------------------------------------------------------------------------------------ denoising loop


def initial_noise(seed: int, shape: Sequence[int]) -> Tensor:
    """The reference's initial noise: float32 on a CPU generator, so a seed gives the same video everywhere."""
    return torch.randn(tuple(shape), generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)


def _cat_retrievals(groups: list[list[Retrieval | None]]) -> list[Retrieval | None]:
    """Per-block retrievals of sequential passes, concatenated along the batch like one batched pass."""
    if len(groups) == 1:
        return groups[0]
    fields = Retrieval.__dataclass_fields__
    return [
        None if parts[0] is None else Retrieval(*(torch.cat([getattr(p, f) for p in parts]) for f in fields))
        for parts in zip(*groups, strict=True)
    ]


@torch.no_grad()
def denoise(
    dit: nn.Module,
    schedule: FlowMatchSchedule,
    noise: Tensor,
    cond: Conditioning,
    *,
    guidance_scale: float = 5.0,
    cfg_batch: bool = True,
    on_step: Callable[[int, float, list[Retrieval | None]], None] | None = None,
    attention_hook: AttentionHook | None = None,
    progress: bool = True,
    description: str = "denoising",
    view_snap: ViewSnap | None = None,
) -> Tensor:
    """The sampling loop: Euler steps of the flow from `noise` (B, C, Ft, h, w) to target latents (float32).

    At every step the DiT sees [clean context latents ; current target latents] along time and the
    bf16-rounded timestep; with guidance, prompt and negative-prompt passes give `v = v_neg + g (v_pos - v_neg)`
    (one batch of 2B when `cfg_batch`, else two passes); only the target frames are stepped.
    `on_step(step, timestep, retrievals)` receives the per-block retrievals (rows: prompt passes, then
    negative passes), e.g. a `RetrievalRecorder`; `attention_hook` is passed to every DiT call
    (`models.attention`). `view_snap`: each step's clean-sample estimate x0 = x - sigma * v is snapped
    (`ViewSnap`) and the step taken towards the snapped estimate.
    """
    device = noise.device
    context_latents = cond.context_latents.to(device, torch.float32)
    num_context = context_latents.shape[2]
    use_cfg = cond.negative_text is not None and guidance_scale != 1.0
    texts = [cond.text, cond.negative_text] if use_cfg else [cond.text]
    groups = [texts] if cfg_batch else [[t] for t in texts]
    x = noise.to(torch.float32)
    if view_snap is not None:  # onto the sampler's device and dtype once, not at every step
        view_snap = ViewSnap(view_snap.views.to(device, torch.float32), view_snap.tolerance)
    for i in tqdm(range(schedule.num_inference_steps), desc=description, disable=not progress):
        timestep = schedule.dit_timestep(i)  # (1,), bf16-rounded as the DiT was trained
        latents = torch.cat([context_latents, x], dim=2)  # (B, C, Fc + Ft, h, w)
        velocities, retrievals = [], []
        for group in groups:
            n = len(group)
            out, retrieval = dit(
                latents.repeat(n, 1, 1, 1, 1),
                timestep.to(device),
                torch.cat(group).to(device),
                cond.cam_context.to(device).repeat(n, 1, 1),
                cond.cam_target.to(device).repeat(n, 1, 1),
                num_context_frames=num_context,
                return_retrieval=True,
                attention_hook=attention_hook,
            )
            velocities.append(out[:, :, num_context:].float())  # (n*B, C, Ft, h, w)
            retrievals.append(retrieval)
        velocity = torch.cat(velocities)
        if use_cfg:
            v_pos, v_neg = velocity.chunk(2)
            velocity = v_neg + guidance_scale * (v_pos - v_neg)
        if view_snap is not None:  # the Euler step goes straight to x0 at sigma 0: aim it at the snapped x0
            sigma = schedule.sigmas[i].item()
            velocity = (x - view_snap(x - sigma * velocity)) / sigma
        x = schedule.step(x, velocity, i)
        if on_step is not None:
            on_step(i, timestep.item(), _cat_retrievals(retrievals))
    return x


# ------------------------------------------------------------------------------------------------ rollouts


@dataclass
class RolloutSample:
    """Where a rollout starts: the condition clip, its cameras as absolute poses, the caption."""

    name: str
    prompt: str
    condition: Tensor
    """(3, context_frames, H, W) condition clip in [-1, 1]."""
    context_poses: Tensor
    """(context latent frames, 4, 4) absolute camera-to-world poses of the condition clip's latent frames
    (`data.cameras.load_pose_streams`)."""


@dataclass
class RolloutChunk:
    """One generated chunk of a rollout."""

    record: ChunkRecord
    """What it conditioned on and retrieved, by bank frame."""
    latents: Tensor
    """(1, C, Ft, h, w) generated latents (float32, CPU)."""
    video: Tensor | None
    """(3, T, H, W) decoded frames in [-1, 1], or None without a decoder."""
    retrieval: RetrievalRecord | None
    """In-model retrievals of every step and block (DiT input frames: `record.context`, then `record.target`)."""


class Rollout:
    """An autoregressive rollout: `step(poses)` generates the next chunk with `denoise`, conditioned on the bank
    frames `rollout.select_history` chooses, and appends it to the bank; `run(trajectory)` steps through a list of
    chunks (docs/rollout.md).

    dit: the model, or a callable returning a context manager that yields it (`HydraPipeline`'s offload slots);
    bank: holds at least the condition clip; text / negative_text: (1, Lt, text_dim) prompt embeddings (negative:
    None for no guidance); seed: chunk i draws its noise from `rollout.chunk_seed` (seed, i); decode: latents
    (1, C, F, h, w) -> video (3, T, H, W), or None; on_chunk: shown each chunk before it enters the bank (a caller
    writing its files there never has a chunk in the bank without them); view_snap: > 0 samples every chunk with
    view snapping at this tolerance (`ViewSnap`, the aligned views taken from the chunk's conditioning frames).
    """

    def __init__(
        self,
        dit: nn.Module | Callable[[], object],
        bank: MemoryBank,
        text: Tensor,
        config: RolloutConfig,
        schedule: FlowMatchSchedule,
        *,
        negative_text: Tensor | None = None,
        guidance_scale: float = 1.0,
        cfg_batch: bool = True,
        seed: int = 0,
        device: str | torch.device = "cpu",
        decode: Callable[[Tensor], Tensor] | None = None,
        record_retrieval: bool = True,
        progress: bool = False,
        on_chunk: Callable[[RolloutChunk], None] | None = None,
        view_snap: float = 0.0,
    ) -> None:
        if len(bank) == 0:
            raise InputError("rollout: the memory bank is empty; it must hold the condition clip first")
        self.dit, self.bank, self.text, self.config, self.schedule = dit, bank, text, config, schedule
        self.negative_text, self.guidance_scale, self.cfg_batch = negative_text, guidance_scale, cfg_batch
        self.seed, self.device, self.decode, self.on_chunk = seed, torch.device(device), decode, on_chunk
        self.record_retrieval, self.progress, self.view_snap = record_retrieval, progress, view_snap

    def _use_dit(self):
        return nullcontext(self.dit) if isinstance(self.dit, nn.Module) else self.dit()

    def step(self, poses: Tensor) -> RolloutChunk:
        """Generate the chunk whose latent frames have the absolute camera poses `poses` (Ft, 4, 4)."""
        index = self.bank.num_chunks
        if poses.ndim != 3 or poses.shape[1:] != (4, 4) or len(poses) < 1:
            raise InputError(f"rollout chunk {index}: expected poses (Ft, 4, 4), got {tuple(poses.shape)}")
        poses = poses.float()
        if not bool(torch.isfinite(poses).all()):
            raise InputError(f"rollout chunk {index}: camera poses contain NaN or infinity")
        use_cfg = self.negative_text is not None and self.guidance_scale != 1.0
        with self._use_dit() as dit:
            kt = dit.cfg.tokenizer_kernel[0]
            choice = select_history(self.bank.poses, poses, self.config, kt)
            reference = poses[0]  # every chunk refers its cameras to its own first target frame
            cond = Conditioning(
                context_latents=self.bank.latents(choice.context),
                text=self.text,
                negative_text=self.negative_text if use_cfg else None,
                cam_context=relative_vectors(self.bank.poses[choice.context], reference)[None],
                cam_target=relative_vectors(poses, reference)[None],
            )
            channels, height, width = self.bank.shape
            seed = chunk_seed(self.seed, index)
            noise = initial_noise(seed, (1, channels, len(poses), height, width)).to(self.device)
            memory = self.record_retrieval and dit.cfg.attention == "memory" and dit.cfg.top_k > 0
            recorder = RetrievalRecorder(passes=2 if use_cfg else 1) if memory else None
            snap = ViewSnap.aligned(cond, self.view_snap, dit.cfg.patch_size[0]) if self.view_snap > 0 else None
            latents = denoise(
                dit,
                self.schedule,
                noise,
                cond,
                guidance_scale=self.guidance_scale,
                cfg_batch=self.cfg_batch,
                on_step=recorder,
                progress=self.progress,
                description=f"chunk {index}",
                view_snap=snap,
            ).cpu()
        target = list(range(len(self.bank), len(self.bank) + len(poses)))
        record = ChunkRecord(
            index, seed, target, choice.context, choice.selected, choice.recent, len(choice.context) + len(poses)
        )
        retrieval = recorder.record(len(choice.context), kt) if recorder else None
        if retrieval is not None:
            record.retrieved = retrieved_bank_frames(
                retrieval.indices[:, :, 0], retrieval.valid[:, :, 0], choice.context + target, len(choice.context), kt
            )
        chunk = RolloutChunk(record, latents, self.decode(latents) if self.decode else None, retrieval)
        if self.on_chunk is not None:
            self.on_chunk(chunk)
        self.bank.append(latents, poses, record.to_json())
        return chunk

    def run(self, trajectory: Sequence[Tensor]) -> Iterator[RolloutChunk]:
        """`step` through the chunks' poses in turn, yielding each chunk as it is done."""
        for poses in trajectory:
            yield self.step(poses)


# ------------------------------------------------------------------------------------------------ pipeline


class HydraPipeline:
    """Wan2.1 + HyDRA video continuation. `pipeline(samples, config)` -> one `GenerationResult` per sample.

    `offload`: `none` keeps every model once loaded; `model` (default) loads each model for its step only;
    `blocks` also streams the DiT's blocks to the GPU one at a time. `attention`/`top_k`/`retrieval` override the DiT's.
    """

    def __init__(
        self,
        files: ModelFiles,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        offload: str = "model",
        attention: str | None = None,
        top_k: int | None = None,
        retrieval: str | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if offload not in OFFLOAD_MODES:
            raise InputError(f"offload: expected one of {OFFLOAD_MODES}, got {offload!r}")
        self.files = files
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.offload = offload
        overrides = (("attention", attention), ("top_k", top_k), ("retrieval", retrieval))
        self.dit_overrides = {k: v for k, v in overrides if v is not None}
        self.log = log or (lambda message: None)
        loaders = {"text_encoder": self._load_text_encoder, "vae": self._load_vae, "dit": self._load_dit}
        self.models = ModelSlots(loaders, offload=offload, device=self.device)

    @classmethod
    def from_pretrained(cls, ckpt_dir: str | Path, hydra_ckpt: str | Path | None = None, **kwargs) -> HydraPipeline:
        return cls(ModelFiles.find(ckpt_dir, hydra_ckpt), **kwargs)

    # -------------------------------------------------------------------------------- model loaders
    def _load_text_encoder(self) -> nn.Module:
        self.log(f"loading text encoder {self.files.text_encoder}")
        return load_text_encoder(self.files.text_encoder, device=self.device, dtype=self.dtype)

    def _load_vae(self) -> nn.Module:
        self.log(f"loading VAE {self.files.vae}")
        return load_vae(self.files.vae, device=self.device, dtype=self.dtype)

    def _load_dit(self) -> nn.Module:
        path = self.files.hydra or self.files.dit
        note = "" if self.files.hydra else " (no HyDRA checkpoint: HyDRA modules initialised as the reference does)"
        self.log(f"loading DiT {path}{note}")
        blocks = self.offload == "blocks"
        dit = load_dit(path, dtype=self.dtype, device="cpu" if blocks else self.device, **self.dit_overrides)
        if blocks:
            enable_block_offload(dit, self.device)
        return dit

    # -------------------------------------------------------------------------------- generation
    def __call__(
        self,
        samples: Sequence[Sample],
        config: GenerationConfig | None = None,
        *,
        record_retrieval: bool = False,
        progress: bool = True,
    ) -> list[GenerationResult]:
        config = config or GenerationConfig()
        # 1. check inputs
        if not samples:
            raise InputError("no samples to generate")
        for sample in samples:
            check_sample(sample, config)
        if record_retrieval and self.dit_overrides.get("attention", "memory") != "memory":
            raise InputError(f"retrieval recording needs attention 'memory', not {self.dit_overrides['attention']!r}")

        # 2. encode prompts (text encoder resident for this step only)
        negative = [config.negative_prompt] if config.use_cfg else []
        prompts = list(dict.fromkeys([*(s.prompt for s in samples), *negative]))
        text = self._encode_prompts(prompts, config.text_length)

        # 3. encode the condition clips (never decoded again: the output reuses the input frames)
        with self.models.use("vae") as vae:
            self.log(f"encoding {len(samples)} condition clip(s)")
            context_latents = [self._vae_encode(vae, s.condition, config.vae_tiled) for s in samples]

        # 4. denoise the target latents (DiT resident for this step only)
        schedule = FlowMatchSchedule(num_inference_steps=config.num_steps, shift=config.shift)
        target_latents, records = [], []
        with self.models.use("dit") as dit:
            self._check_dit(dit, context_latents[0], next(iter(text.values())), record_retrieval)
            for sample, latents in zip(samples, context_latents, strict=True):
                cond = Conditioning(
                    context_latents=latents,
                    text=text[sample.prompt],
                    negative_text=text[config.negative_prompt] if config.use_cfg else None,
                    cam_context=sample.cam_context[None],
                    cam_target=sample.cam_target[None],
                )
                shape = (1, latents.shape[1], config.target_latent_frames, *latents.shape[3:])
                recorder = RetrievalRecorder(passes=2 if config.use_cfg else 1) if record_retrieval else None
                target = denoise(
                    dit,
                    schedule,
                    initial_noise(config.seed, shape).to(self.device),
                    cond,
                    guidance_scale=config.guidance_scale,
                    cfg_batch=config.cfg_batch,
                    on_step=recorder,
                    progress=progress,
                    description=sample.name,
                )
                target_latents.append(target.cpu())
                kt = dit.cfg.tokenizer_kernel[0]
                records.append(recorder.record(config.context_latent_frames, kt) if recorder else None)

        # 5. decode the generated latents only
        with self.models.use("vae") as vae:
            self.log(f"decoding {len(samples)} generated clip(s)")
            generated = [self._vae_decode(vae, z, config.vae_tiled) for z in target_latents]

        # 6. outputs: condition frames followed by generated frames
        return [
            GenerationResult(s.name, torch.cat([s.condition.float(), g], dim=1), c, z, r)
            for s, g, c, z, r in zip(samples, generated, context_latents, target_latents, records, strict=True)
        ]

    def rollout(
        self,
        sample: RolloutSample,
        config: GenerationConfig | None = None,
        history: RolloutConfig | None = None,
        *,
        bank: MemoryBank | None = None,
        record_retrieval: bool = True,
        progress: bool = True,
        on_chunk: Callable[[RolloutChunk], None] | None = None,
    ) -> Rollout:
        """Start a rollout from `sample`'s condition clip; its `step(poses)` / `run(trajectory)` then generate and
        decode chunk after chunk (docs/rollout.md).

        The prompts are encoded once, the condition clip into `bank` (default: a new in-memory `MemoryBank`) unless
        the bank holds it already (a resumed rollout's `MemoryBank.open`). `config.target_frames` is not used: each
        step's poses give its chunk's length. With one chunk of `config.target_frames` frames and a condition clip
        of at most `history.context_frames` latent frames, the result equals `pipeline([sample], config)`'s.
        """
        config = config or GenerationConfig()
        history = history or RolloutConfig()
        expected = (3, config.context_frames, config.height, config.width)
        if tuple(sample.condition.shape) != expected:
            raise InputError(f"{sample.name}: condition video {tuple(sample.condition.shape)}, expected {expected}")
        if tuple(sample.context_poses.shape) != (config.context_latent_frames, 4, 4):
            raise InputError(
                f"{sample.name}: context poses {tuple(sample.context_poses.shape)}, expected "
                f"({config.context_latent_frames}, 4, 4): one per latent frame of {config.context_frames} frames"
            )
        if not sample.prompt.strip():
            raise InputError(f"{sample.name}: empty prompt")
        negative = [config.negative_prompt] if config.use_cfg else []
        text = self._encode_prompts(list(dict.fromkeys([sample.prompt, *negative])), config.text_length)
        bank = bank if bank is not None else MemoryBank()
        if len(bank) == 0:
            with self.models.use("vae") as vae:
                self.log(f"encoding the condition clip of {sample.name}")
                bank.append(self._vae_encode(vae, sample.condition, config.vae_tiled), sample.context_poses)
        checked: list[bool] = []

        @contextmanager
        def use_dit():
            with self.models.use("dit") as dit:
                if not checked:
                    self._check_dit(dit, bank.latents([0]), text[sample.prompt], False)
                    checked.append(True)
                yield dit

        def decode(latents: Tensor) -> Tensor:
            with self.models.use("vae") as vae:
                return self._vae_decode(vae, latents, config.vae_tiled)

        return Rollout(
            use_dit,
            bank,
            text[sample.prompt],
            history,
            FlowMatchSchedule(num_inference_steps=config.num_steps, shift=config.shift),
            negative_text=text[config.negative_prompt] if config.use_cfg else None,
            guidance_scale=config.guidance_scale,
            cfg_batch=config.cfg_batch,
            seed=config.seed,
            device=self.device,
            decode=decode,
            record_retrieval=record_retrieval,
            progress=progress,
            on_chunk=on_chunk,
        )

    def _encode_prompts(self, prompts: list[str], text_length: int) -> dict[str, Tensor]:
        tokenizer = load_tokenizer(self.files.tokenizer)
        with self.models.use("text_encoder") as encoder:
            self.log(f"encoding {len(prompts)} prompt(s)")
            return {p: encode_prompts(encoder, tokenizer, p, max_length=text_length).cpu() for p in prompts}

    def _vae_encode(self, vae, video: Tensor, tiled: bool) -> Tensor:
        return vae.encode(video[None].to(self.device), tiled=tiled).cpu()  # (1, C, Fc, h, w)

    def _vae_decode(self, vae, latents: Tensor, tiled: bool) -> Tensor:
        return vae.decode(latents.to(self.device), tiled=tiled)[0].float().cpu()  # (3, Tt, H, W)

    def _check_dit(self, dit, latents: Tensor, text: Tensor, record_retrieval: bool) -> None:
        cfg = dit.cfg
        source = self.files.hydra or self.files.dit
        if cfg.in_dim != latents.shape[1] or cfg.text_dim != text.shape[-1]:
            raise CheckpointError(
                f"{source}: DiT expects {cfg.in_dim} latent channels and text width {cfg.text_dim}, but the VAE "
                f"gives {latents.shape[1]} and the text encoder {text.shape[-1]}"
            )
        if cfg.camera_dim != CAMERA_DIM:
            raise CheckpointError(f"{source}: DiT takes {cfg.camera_dim} numbers per camera, expected {CAMERA_DIM}")
        if record_retrieval and (cfg.attention != "memory" or cfg.top_k == 0):
            raise InputError(
                f"retrieval recording needs attention 'memory' with top_k > 0 (got {cfg.attention}, {cfg.top_k})"
            )
