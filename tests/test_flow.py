import json

import pytest
import torch
from conftest import FIXTURES

from hydra_wm.errors import ConfigError
from hydra_wm.flow import FlowMatchSchedule, round_timestep_bf16


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((FIXTURES / "official_flow_schedule.json").read_text())


def _close(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32), rtol=0, atol=1e-5)


def test_inference_schedule_matches_reference(reference):
    ref = reference["inference"]
    schedule = FlowMatchSchedule(num_inference_steps=ref["num_inference_steps"], shift=ref["shift"])
    _close(schedule.sigmas, ref["sigmas"])
    _close(schedule.timesteps, ref["timesteps"])


def test_training_schedule_matches_reference(reference):
    ref = reference["training"]
    schedule = FlowMatchSchedule(num_train_timesteps=ref["num_train_timesteps"], shift=ref["shift"])
    _close(schedule.train_timesteps, ref["timesteps"])
    _close(schedule.train_weights, ref["weights"])
    assert schedule.train_weights.sum().item() == pytest.approx(1000.0, rel=1e-5)
    assert schedule.train_weights.min().item() == 0.0


def test_euler_step_integrates_a_straight_path_exactly():
    # On the straight path x_s = (1 - s) x0 + s noise the velocity is constant, so Euler lands on x0 after the
    # last step (s_next = 0), and every intermediate point lies on the path.
    schedule = FlowMatchSchedule(num_inference_steps=7, shift=3.0)
    x0, noise = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    v = schedule.velocity_target(x0, noise)
    x = noise.clone()
    for i in range(schedule.num_inference_steps):
        torch.testing.assert_close(x, schedule.add_noise(x0, noise, schedule.sigmas[i].item()))
        x = schedule.step(x, v, i)
    torch.testing.assert_close(x, x0)


def test_add_noise_broadcasts_per_sample_sigma():
    x0, noise = torch.zeros(2, 3, 5), torch.ones(2, 3, 5)
    out = FlowMatchSchedule.add_noise(x0, noise, torch.tensor([0.25, 0.75]))
    assert out[0].unique().tolist() == [0.25] and out[1].unique().tolist() == [0.75]


def test_dit_timestep_is_bf16_rounded():
    schedule = FlowMatchSchedule()
    assert schedule.timesteps[1].item() == pytest.approx(995.9349, abs=1e-3)
    assert schedule.dit_timestep(1).tolist() == [996.0]
    assert schedule.dit_timestep(0).tolist() == [1000.0]
    assert round_timestep_bf16(torch.tensor([92.5926])).tolist() == [92.5]


@pytest.mark.parametrize("kwargs", [{"num_inference_steps": 0}, {"shift": 0.0}, {"num_train_timesteps": 1}])
def test_invalid_schedule_is_rejected(kwargs):
    with pytest.raises(ConfigError):
        FlowMatchSchedule(**kwargs)
