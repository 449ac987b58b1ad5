"""Training under `torchrun --nproc_per_node=2` on the CPU (gloo): DDP, and FSDP stopped and resumed, agree.

One torchrun launch runs this file as a script (three trainings in one process group, to pay the start-up once);
the test then compares what they exported.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hydra_wm.data.samples import write_manifest, write_sample

SETTINGS = dict(
    preset="debug",
    steps=2,
    batch_size=1,
    lr=1e-3,
    device="cpu",
    progress=False,
    log_every=1,
    ema_decay=0.5,
    grad_clip=1.0,
    activation_checkpointing=True,
)


def run_all(root: Path) -> None:
    """Under torchrun: DDP for 2 steps; FSDP for 1 step, then resumed for the 2nd."""
    import gc

    import torch.distributed as dist

    from hydra_wm.training import TrainConfig, train

    dist.init_process_group("gloo")
    data = str(root / "data")
    train(TrainConfig(out=str(root / "ddp"), data=data, parallel="ddp", **SETTINGS))
    train(TrainConfig(out=str(root / "fsdp"), data=data, parallel="fsdp", stop_after=1, **SETTINGS))
    train(TrainConfig(out=str(root / "fsdp"), data=data, parallel="fsdp", resume=True, **SETTINGS))
    gc.collect()  # nothing of DDP/FSDP may be alive at destroy_process_group (gloo aborts at exit otherwise)
    dist.destroy_process_group()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_ddp_and_resumed_fsdp_agree(tmp_path):
    generator = torch.Generator().manual_seed(0)
    write_manifest(tmp_path / "data", {"made_by": "test_train_distributed"})
    for i in range(4):
        item = {
            "context_latents": torch.randn(4, 4, 8, 8, generator=generator),
            "target_latents": torch.randn(4, 4, 8, 8, generator=generator),
            "context_cameras": torch.randn(4, 12, generator=generator),
            "target_cameras": torch.randn(4, 12, generator=generator),
            "text": torch.randn(8, 16, generator=generator),
        }
        write_sample(tmp_path / "data" / "samples" / f"s{i}.safetensors", item, f"s{i}", "caption")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        __file__,
        str(tmp_path),
    ]
    # On a timeout, SIGTERM lets torchrun stop its workers (they run in sessions of their own, so killing
    # torchrun's group alone would orphan them); SIGKILL only if it does not.
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    assert "resumed from" in stdout and "step 2  loss" in stdout
    ddp, fsdp = (
        load_file(str(tmp_path / "ddp" / "hydra.safetensors")),
        load_file(str(tmp_path / "fsdp" / "hydra.safetensors")),
    )
    assert ddp.keys() == fsdp.keys() and len(ddp) == 85
    for name in ddp:
        torch.testing.assert_close(fsdp[name], ddp[name], rtol=1e-5, atol=1e-6, msg=name)
    moved = load_file(str(tmp_path / "ddp" / "checkpoints" / "step_00000002.safetensors"))
    assert {k.split(".")[0] for k in moved} == {"model", "ema", "optim", "rng"}
    assert {k.split(".")[1] for k in moved if k.startswith("rng.")} == {"0", "1"}  # both ranks' RNG states


if __name__ == "__main__":
    run_all(Path(sys.argv[1]))
