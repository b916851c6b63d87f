"""Multi-process runs (torchrun, 2 CPU processes, gloo) against single-process ones.

Each test launches ``torchrun`` as a subprocess, the way users run balcon on several
GPUs, so the environment handling, the process group and the collectives are the
real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from balcon.config import DataConfig
from balcon.engine.loaders import eval_loader
from balcon.engine.steps import predict
from balcon.losses import BalancedContrastiveLoss
from balcon.methods import METHODS, get_method
from balcon.runs import evaluate_checkpoint, fit, load_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
import dist_checks  # noqa: E402
from conftest import child_pids  # noqa: E402
from test_engine import TINY, tiny_config  # noqa: E402

TESTS = Path(__file__).parent


def torchrun(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` on the CPU; returns the process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         "2", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("dist")
    proc = torchrun([str(TESTS / "dist_checks.py"), str(out)], cwd=out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_gathered_loss_and_feature_gradients_equal_single_process(rank_results):
    features, labels, prototypes = dist_checks.loss_inputs()
    features.requires_grad_(True)
    prototypes.requires_grad_(True)
    loss = BalancedContrastiveLoss(0.1)(features, labels, prototypes)
    loss.backward()
    half = dist_checks.BATCH // 2
    for rank, res in enumerate(rank_results):
        assert res["world"] == 2
        torch.testing.assert_close(res["loss"], loss.detach(), rtol=1e-5, atol=1e-7)
        # every rank computes the whole loss, so its features get world_size times the
        # gradient; DDP's averaging divides that back (checked on parameters below)
        torch.testing.assert_close(res["feature_grad"] / 2,
                                   features.grad[rank * half:(rank + 1) * half],
                                   rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(res["prototype_grad"], prototypes.grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("method", list(METHODS))
def test_ddp_parameter_gradients_equal_single_process(rank_results, method: str):
    """Every method of the table trains under DDP (two steps) with the 1-process gradients;
    the parameters a method does not use get none, in both."""
    views, labels = dist_checks.ddp_inputs()
    expected = dist_checks.method_grads(dist_checks.tiny_model(), views, labels, method)
    used = get_method(method).parts
    assert (expected["prototype_head.weight"] is None) == ("prototype_head" not in used)
    for res in rank_results:
        grads = res["param_grads"][method]
        assert grads.keys() == expected.keys()
        for name, grad in expected.items():
            if grad is None:
                assert grads[name] is None, name
            else:
                torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_sharded_evaluation_equals_single_process(rank_results):
    images = dist_checks.eval_images()
    device = torch.device("cpu")
    loader = eval_loader(images, DataConfig(image_size=8, num_workers=0), device)
    logits, labels = predict(dist_checks.TinyClassifier(), loader, device, "off")
    assert len(labels) == 7
    for res in rank_results:
        assert torch.equal(res["eval_labels"], labels)
        torch.testing.assert_close(res["eval_logits"], logits)


SMALL = ("model.head_hidden=16", "model.head_dim=8")


def tiny_train_args(data_dir: Path, run: Path) -> list[str]:
    """``-m balcon train ...`` of a one-epoch tiny CIFAR run on the CPU."""
    args = ["-m", "balcon", "train", "--preset", "cifar10-lt-r100", "--device", "cpu",
            "--data-dir", str(data_dir), "--out", str(run), "--epochs", "1"]
    for item in (*TINY, *SMALL):
        args += ["--set", item]
    return args


def test_batchnorm_statistics_are_rank_zeros_after_broadcast(rank_results):
    first, second = rank_results
    assert not torch.equal(first["bn_before"], second["bn_before"])  # each rank's own data
    assert torch.equal(second["bn_after"], first["bn_before"])
    assert torch.equal(first["bn_after"], first["bn_before"])


def test_a_failure_on_one_rank_stops_every_rank_alike(rank_results):
    for res in rank_results:
        assert res["agreed_error"] == "BalconError: process 1: no such folder here"


def test_two_process_training_run(tmp_path: Path, cifar10_shared_root: Path):
    """A tiny SupCon run under torchrun completes; rank 0 alone logs, prints and writes.

    SupCon skips the prototype head, so DDP must look for unused parameters (balcon 0.3
    failed at the second step); BCL runs in the two-node test, LA in the resume test.
    """
    run = tmp_path / "run"
    args = [*tiny_train_args(cifar10_shared_root, run), "--set", "loss.method=supcon"]
    proc = torchrun(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]
    assert records[0]["split"] == "test" and 0 <= records[0]["top1"] <= 100
    assert "2 processes (32 images each per batch)" in (run / "train.log").read_text()
    assert proc.stdout.count("run directory:") == 1
    state = load_checkpoint(run / "last.pt")
    assert not any(k.startswith("module.") for k in state["model"])
    # the logged metrics are those of the saved model (rank 0's BatchNorm statistics)
    metrics, _ = evaluate_checkpoint(run / "last.pt", device="cpu")
    for key in ("top1", "top5", "per_class"):
        assert metrics[key] == records[0][key], key


def test_resume_with_another_world_size(tmp_path: Path, cifar10_shared_root: Path):
    """Epoch 1 in one process, epoch 2 under torchrun with two; LA trains without heads,
    on the device pipeline (each process holds the set and makes its share's views)."""
    run = tmp_path / "run"
    fit(tiny_config(*SMALL, "loss.method=la", "data.pipeline=device"), cifar10_shared_root,
        run, device="cpu", stop_after=1)
    proc = torchrun(["-m", "balcon", "train", "--resume", str(run), "--device", "cpu"],
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
    assert "resuming" in (run / "train.log").read_text()


def test_batch_must_divide_by_processes(tmp_path: Path, cifar10_shared_root: Path):
    proc = torchrun(["-m", "balcon", "train", "--preset", "cifar10-lt-r100", "--device", "cpu",
                     "--data-dir", str(cifar10_shared_root), "--out", str(tmp_path / "r"),
                     "--set", "train.batch_size=63", "--epochs", "1"], cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.count("balcon: error: train.batch_size 63") == 1


def test_corrupt_image_in_one_rank_share_is_reported_by_that_rank(tmp_path: Path,
                                                                    image_folder_root: Path):
    from balcon.data import EpochSampler, load_image_folder

    train = load_image_folder(image_folder_root / "train")
    shares = [set(i for _, i in EpochSampler(len(train), seed=0, num_replicas=2, rank=r))
              for r in range(2)]
    victim = Path(train.paths[min(shares[1] - shares[0])])
    victim.write_bytes(b"not an image")
    proc = torchrun(["-m", "balcon", "train", "--preset", "imagefolder-r32", "--device", "cpu",
                     "--data-dir", str(image_folder_root), "--out", str(tmp_path / "run"),
                     "--epochs", "1", "--set", "model.encoder=resnet8",
                     "--set", "train.batch_size=4", "--set", "data.num_workers=0",
                     "--set", "data.pipeline=workers"], cwd=tmp_path)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("balcon: error:")]
    assert errors == [f"balcon: error: process 1: cannot read image {victim} "
                      f"(UnidentifiedImageError: cannot identify image file {str(victim)!r}); "
                      "replace or remove the file (balcon train skips such files with --set "
                      "data.on_bad_image=skip, balcon predict with --skip-unreadable)"], \
        proc.stderr[-2000:]


def test_sync_bn_on_cpu_processes_is_refused():
    from balcon.engine.distributed import DistContext
    from balcon.engine.prepare import _build
    from balcon.errors import BalconError

    cfg = tiny_config("train.sync_bn=true")
    two = DistContext(rank=0, world_size=2, local_rank=0, local_world_size=2)
    with pytest.raises(BalconError, match="train.sync_bn needs GPUs"):
        _build(cfg, 10, torch.device("cpu"), two)
    model, _ = _build(cfg, 10, torch.device("cpu"), DistContext())  # one process: plain BN
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())


def test_two_nodes_of_one_process_each(tmp_path: Path, cifar10_shared_root: Path):
    """Multi-node as torchrun runs it: two agents (node ranks 0 and 1), one process each,
    meeting at a static rendezvous on this machine; LOCAL_RANK is 0 on both nodes."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = tmp_path / "run"
    args = tiny_train_args(cifar10_shared_root, run)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
         str(node), "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port",
         str(port), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for node in range(2)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    assert "2 processes (32 images each per batch)" in (run / "train.log").read_text()
    assert [json.loads(line)["epoch"] for line in
            (run / "metrics.jsonl").read_text().splitlines()] == [1]
    assert "run directory:" in outputs[0][0] and "run directory:" not in outputs[1][0]


def test_two_process_preemption_resumes_bit_exactly(tmp_path: Path, cifar10_shared_root: Path):
    """SIGTERM to one of two processes: both stop at the same step with one checkpoint
    (each rank's partial sums in it), and resuming with two processes ends with the
    uninterrupted two-process run's weights, bit for bit."""
    import signal
    import time

    def args(run: Path) -> list[str]:
        out = ["-m", "balcon", "train", "--preset", "cifar10-lt-r100", "--device", "cpu",
               "--data-dir", str(cifar10_shared_root), "--out", str(run), "--epochs", "2"]
        for item in (*TINY, *SMALL, "train.batch_size=16"):
            out += ["--set", item]
        return out

    proc = torchrun(args(tmp_path / "ref"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc_per_node", "2", *args(run)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run / "train.log"
    deadline = time.monotonic() + 120
    while not (log.exists() and "epoch 1/2" in log.read_text()):
        assert agent.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    workers = child_pids(agent.pid)
    assert len(workers) == 2
    os.kill(max(workers), signal.SIGTERM)  # one process only: the ranks agree
    _, err = agent.communicate(timeout=60)
    assert "stopped: preempted at epoch" in log.read_text(), err[-2000:]
    state = load_checkpoint(run / "last.pt")
    assert state["world_size"] == 2
    if state.get("step"):
        assert state["epoch_sums"].shape == (2, 5)
    proc = torchrun(["-m", "balcon", "train", "--resume", str(run), "--device", "cpu"],
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref, resumed = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(run / "last.pt")
    assert all(torch.equal(ref["model"][k], resumed["model"][k]) for k in ref["model"])
