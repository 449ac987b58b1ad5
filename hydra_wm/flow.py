"""Rectified-flow (flow-matching) schedule, Euler sampler step and training targets (docs/reference.md §4).

Follows the reference's scheduler (DiffSynth-Studio `diffsynth/schedulers/flow_match.py`, `FlowMatchScheduler`
with `shift=5, sigma_min=0, extra_one_step=True`), which is also what Wan2.1 samples with:

    s  = linspace(1, 0, n + 1)[:-1]          # n sigmas, 1 included, 0 excluded
    s' = shift * s / (1 + (shift - 1) * s)    # time shift towards the noisy end
    t  = num_train_timesteps * s'             # what the DiT is conditioned on

Training uses the same formula with n = num_train_timesteps and weights each timestep with a bell curve
centred on t = 500 (`w = y - min y`, `y = exp(-2 ((t - 500) / 1000)^2)`, normalised to sum to 1000).

Everything is computed in float32 with the reference's operation order, so the numbers match
`tests/fixtures/official_flow_schedule.json` bit for bit rather than to within rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import ConfigError


def shifted_sigmas(num_steps: int, shift: float) -> torch.Tensor:
    """`num_steps` shifted noise levels from 1 down to (but excluding) 0, float32. Shape (num_steps,)."""
    sigmas = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float32)[:-1]
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def round_timestep_bf16(timestep: torch.Tensor) -> torch.Tensor:
    """The timestep as the released DiT saw it in training: rounded to bfloat16, returned as float32.

    The reference casts the timestep to bf16 before the sinusoidal embedding (995.93 -> 996; docs/reference.md §1,
    step 1), so feeding the exact float value would condition the model on times it never saw.
    """
    return timestep.to(torch.bfloat16).to(torch.float32)


@dataclass
class FlowMatchSchedule:
    """Flow-matching schedule for sampling (Euler) and training (noising, velocity target, loss weight)."""

    num_inference_steps: int = 50
    """Sampling steps n."""
    shift: float = 5.0
    """Time shift; larger values spend more steps at high noise (Wan2.1 T2V: 5.0)."""
    num_train_timesteps: int = 1000
    """Timesteps of the training schedule; also the scale from sigma to timestep."""

    sigmas: torch.Tensor = field(init=False, repr=False)
    """Inference noise levels s'_i, shape (n,), descending from 1.0."""
    timesteps: torch.Tensor = field(init=False, repr=False)
    """Inference timesteps num_train_timesteps * s'_i, shape (n,) (exact values; see `dit_timestep`)."""
    train_sigmas: torch.Tensor = field(init=False, repr=False)
    """Training noise levels, shape (num_train_timesteps,)."""
    train_timesteps: torch.Tensor = field(init=False, repr=False)
    """Training timesteps, shape (num_train_timesteps,)."""
    train_weights: torch.Tensor = field(init=False, repr=False)
    """Loss weight of each training timestep, shape (num_train_timesteps,), summing to num_train_timesteps."""

    def __post_init__(self) -> None:
        if int(self.num_inference_steps) < 1:
            raise ConfigError(f"num_inference_steps: expected >= 1, got {self.num_inference_steps}")
        if int(self.num_train_timesteps) < 2:
            raise ConfigError(f"num_train_timesteps: expected >= 2, got {self.num_train_timesteps}")
        if not self.shift > 0:
            raise ConfigError(f"shift: expected > 0, got {self.shift}")
        self.sigmas = shifted_sigmas(self.num_inference_steps, self.shift)
        self.timesteps = self.sigmas * self.num_train_timesteps
        self.train_sigmas = shifted_sigmas(self.num_train_timesteps, self.shift)
        self.train_timesteps = self.train_sigmas * self.num_train_timesteps
        self.train_weights = self._bell_weights(self.train_timesteps)

    def _bell_weights(self, timesteps: torch.Tensor) -> torch.Tensor:
        # DiffSynth `FlowMatchScheduler.set_timesteps(training=True)`: a Gaussian bump over the middle
        # timesteps, shifted so the least-weighted timestep gets exactly 0, then scaled to a mean of 1.
        n = self.num_train_timesteps
        bump = torch.exp(-2 * ((timesteps - n / 2) / n) ** 2)
        bump = bump - bump.min()
        return bump * (n / bump.sum())

    def dit_timestep(self, i: int) -> torch.Tensor:
        """Timestep of sampling step `i` as the DiT must see it (bf16-rounded, float32). Shape (1,)."""
        return round_timestep_bf16(self.timesteps[i : i + 1])

    def step(self, x: torch.Tensor, velocity: torch.Tensor, i: int) -> torch.Tensor:
        """One Euler step of dx/ds = v from s'_i to s'_{i+1} (0 after the last step)."""
        sigma = self.sigmas[i].item()
        sigma_next = self.sigmas[i + 1].item() if i + 1 < self.num_inference_steps else 0.0
        return x + velocity * (sigma_next - sigma)

    @staticmethod
    def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """x_t = (1 - s) x0 + s noise. A tensor `sigma` of shape (B,) is broadcast over the other dims."""
        if isinstance(sigma, torch.Tensor) and sigma.dim() == 1:
            sigma = sigma.reshape(-1, *([1] * (x0.dim() - 1))).to(x0)
        return (1 - sigma) * x0 + sigma * noise

    @staticmethod
    def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the DiT is trained to predict: d x_t / d s = noise - x0."""
        return noise - x0
