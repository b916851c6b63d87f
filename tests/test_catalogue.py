"""A catalogue of bad inputs, each through ``balcon.cli.main`` in this process.

Each case must answer with exit status 2 and one line (``balcon: error: ...``, no
traceback) naming the culprit and what to do, and must leave every file that existed
before it byte for byte as it was (hashes before and after), but a run's ``train.log``,
which may only grow: a run that stops says why at its end.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_hostile import Payload  # a pickle that writes a file when loaded

from balcon.cli import main

#: Words of a fix: every message tells the user what to do.
FIX_WORDS = ("set ", "give", "check", "fix", "choose", "remove", "replace", "delete",
             "re-download", "re-create",
             "must be", " has ",
             "add ", "use ", "point", "quote", "write it", "start", "lower", "keep one",
             "register", "wait", "drop ")


def png(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.RandomState(seed).randint(0, 256, (36, 40, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def folder(root: Path, counts=((4, 3, 2), (2, 2, 2))) -> Path:
    for split, per_class in zip(("train", "test"), counts, strict=True):
        for cls, n in zip("abc", per_class, strict=True):
            for i in range(n):
                png(root / split / cls / f"{i}.png", seed=i)
    return root


def hashes(root: Path) -> dict[str, str]:
    """Each file's hash; a ``train.log`` by its content, which may only grow."""
    return {str(p): p.read_text() if p.name == "train.log" else
            hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def kept(before: str, after: str | None, path: str) -> bool:
    """Whether a file is as it was (a ``train.log`` with lines added at its end is)."""
    if after is not None and path.endswith("train.log"):
        return after.startswith(before)
    return after == before


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished one-epoch run on an image folder (checkpoints for the cases)."""
    root = tmp_path_factory.mktemp("trained")
    data = folder(root / "data")
    run = root / "run"
    assert main(["train", "--preset", "imagefolder-r32", "--data-dir", str(data), "--out",
                 str(run), "--epochs", "1", "--set", "model.encoder=resnet8",
                 "--set", "train.batch_size=4", "--set", "model.head_hidden=16",
                 "--set", "model.head_dim=8"]) == 0
    return run


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    args = ["train", "--preset", "imagefolder-r32", "--data-dir", str(data), "--out", str(out),
            "--epochs", "1", "--set", "model.encoder=resnet8", "--set", "train.batch_size=4"]
    for item in extra:
        args += ["--set", item]
    return args


def case_corrupt_image(t: Path, run: Path):
    data = folder(t / "d")
    (data / "train" / "a" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return train_args(data, t / "out"), "0.png"


def case_truncated_image(t: Path, run: Path):
    data = folder(t / "d")
    img = data / "train" / "b" / "1.png"
    img.write_bytes(img.read_bytes()[:60])
    return train_args(data, t / "out"), "1.png"


def case_zero_byte_image(t: Path, run: Path):
    data = folder(t / "d")
    (data / "train" / "c" / "0.png").write_bytes(b"")
    return train_args(data, t / "out"), "0.png"


def case_text_named_jpg(t: Path, run: Path):
    data = folder(t / "d")
    (data / "train" / "a" / "notes.jpg").write_text("this is not a photo")
    return train_args(data, t / "out"), "notes.jpg"


def case_decompression_bomb(t: Path, run: Path, monkeypatch=None):
    data = folder(t / "d")
    Image.new("RGB", (4000, 4000)).save(data / "train" / "a" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # PIL's limit, scaled down
    return train_args(data, t / "out", "data.pipeline=device"), "bomb.png"


def case_empty_class_folder(t: Path, run: Path):
    data = folder(t / "d")
    (data / "train" / "d").mkdir()
    (data / "test" / "d").mkdir()
    return train_args(data, t / "out"), "'d'"


def case_test_class_missing_from_train(t: Path, run: Path):
    data = folder(t / "d")
    png(data / "test" / "zebra" / "0.png")
    return train_args(data, t / "out"), "zebra"


def _split_data(t: Path, line: str) -> tuple[Path, str]:
    data = folder(t / "d")
    (data / "train.txt").write_text("train/a/0.png 0\ntrain/b/0.png 1\n" + line + "\n")
    return data, "data.train_split=train.txt"


def case_split_file_bad_line(t: Path, run: Path):
    data, split = _split_data(t, "train/c/0.png")
    return train_args(data, t / "out", split), "train.txt:3"


def case_split_file_bad_label(t: Path, run: Path):
    data, split = _split_data(t, "train/c/0.png seven")
    return train_args(data, t / "out", split), "train.txt:3"


def case_split_file_missing_path(t: Path, run: Path):
    data, split = _split_data(t, "train/c/nowhere.png 2")
    return train_args(data, t / "out", split), "nowhere.png"


def case_bad_config_key(t: Path, run: Path):
    return train_args(folder(t / "d"), t / "out", "optim.lrr=0.1"), "optim.lrr"


def case_bad_config_value(t: Path, run: Path):
    return train_args(folder(t / "d"), t / "out", "optim.lr=fast"), "optim.lr"


def case_bad_config_type(t: Path, run: Path):
    return train_args(folder(t / "d"), t / "out", "train.epochs=1.5"), "train.epochs"


def case_unknown_choice(t: Path, run: Path):
    return train_args(folder(t / "d"), t / "out", "loss.method=focal"), "loss.method"


def case_unknown_preset(t: Path, run: Path):
    return ["train", "--preset", "cifar10-lt-r99", "--data-dir", str(t)], "cifar10-lt-r99"


def case_config_file_not_yaml(t: Path, run: Path):
    (t / "my.yaml").write_text("train: {epochs: [1\n")
    return ["train", "--config", str(t / "my.yaml"), "--data-dir", str(t)], "my.yaml"


def case_config_file_with_a_list_as_key(t: Path, run: Path):
    (t / "my.yaml").write_text("base: cifar10-lt-r100\n? [a, b]\n: 1\n")
    return ["train", "--config", str(t / "my.yaml"), "--data-dir", str(t)], "my.yaml"


def case_malformed_seeds_file(t: Path, run: Path):
    (t / "seeds").mkdir()
    (t / "seeds" / "seeds.json").write_text('{"seeds": ["zero"], "config": {}}')
    return ["train", "--resume", str(t / "seeds")], "seeds.json"


def case_config_file_unknown_base(t: Path, run: Path):
    (t / "my.yaml").write_text("base: cifar10-lt-r99\n")
    return ["train", "--config", str(t / "my.yaml"), "--data-dir", str(t)], "cifar10-lt-r99"


def case_foreign_checkpoint(t: Path, run: Path):
    torch.save({"weight": torch.zeros(2)}, t / "other.pt")
    return ["eval", "--checkpoint", str(t / "other.pt")], "other.pt"


def case_truncated_checkpoint(t: Path, run: Path):
    data = (run / "best.pt").read_bytes()
    (t / "cut.pt").write_bytes(data[: len(data) // 3])
    return ["eval", "--checkpoint", str(t / "cut.pt")], "cut.pt"


def case_malicious_checkpoint(t: Path, run: Path):
    torch.save({"model": Payload(t / "pwned.txt")}, t / "evil.pt")
    return ["eval", "--checkpoint", str(t / "evil.pt")], "evil.pt"


def case_checkpoint_of_other_data_on_eval(t: Path, run: Path):
    other = folder(t / "d", counts=((2, 2, 2), (1, 1, 1)))
    shutil.move(other / "test" / "c", other / "test" / "x")
    shutil.move(other / "train" / "c", other / "train" / "x")
    return ["eval", "--checkpoint", str(run / "best.pt"), "--data-dir", str(other)], "classes"


def case_other_data_on_resume(t: Path, run: Path):
    copy = t / "run"
    shutil.copytree(run, copy)
    state = torch.load(copy / "last.pt", weights_only=True)
    torch.save({**state, "epoch": 0}, copy / "last.pt")  # one epoch left to train
    other = folder(t / "d", counts=((2, 2, 2), (1, 1, 1)))
    return ["train", "--resume", str(copy), "--data-dir", str(other)], "not the data"


def case_run_directory_is_a_file(t: Path, run: Path):
    (t / "out").write_text("a file")
    return train_args(folder(t / "d"), t / "out"), "is a file"


def case_unreadable_data_directory(t: Path, run: Path, monkeypatch=None):
    import os

    data = folder(t / "d")
    real = os.scandir

    def denied(path=".", *a, **k):  # as root, chmod 000 would not deny
        if str(path).startswith(str(data)):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(os, "scandir", denied)
    return train_args(data, t / "out"), "Permission denied"


def case_missing_data_directory(t: Path, run: Path):
    return train_args(t / "nowhere", t / "out"), "nowhere"


def case_resume_of_no_run(t: Path, run: Path):
    (t / "empty").mkdir()
    return ["train", "--resume", str(t / "empty")], "holds no run"


def case_corrupt_last_pt_on_resume(t: Path, run: Path):
    copy = t / "run"
    shutil.copytree(run, copy)
    (copy / "last.pt").write_bytes(b"garbage")
    return ["train", "--resume", str(copy)], "last.pt"


def case_missing_pretrained_weights(t: Path, run: Path):
    return train_args(folder(t / "d"), t / "out", f"model.pretrained={t / 'none.pt'}"), \
        "none.pt"


def case_eval_split_absent(t: Path, run: Path):
    return ["eval", "--checkpoint", str(run / "best.pt"), "--split", "val"], "val"


def case_predict_folder_without_images(t: Path, run: Path):
    (t / "nothing").mkdir()
    return ["predict", "--checkpoint", str(run / "best.pt"), str(t / "nothing")], "nothing"


def case_batch_size_too_small(t: Path, run: Path):
    return train_args(folder(t / "d"), t / "out", "train.batch_size=1"), "train.batch_size"


def case_eval_out_over_a_checkpoint(t: Path, run: Path):
    return ["eval", "--checkpoint", str(run / "best.pt"), "--out", str(run / "last.pt")], \
        "last.pt"


def case_predict_out_over_its_image(t: Path, run: Path):
    png(t / "cat.png")
    return ["predict", "--checkpoint", str(run / "best.pt"), str(t / "cat.png"), "--out",
            str(t / "cat.png")], "cat.png"


def case_report_out_over_a_checkpoint(t: Path, run: Path):
    return ["report", str(run), "--out", str(run / "best.pt")], "best.pt"


def case_export_out_over_a_run_file(t: Path, run: Path):
    return ["export", "--checkpoint", str(run / "best.pt"), "--format", "torchscript",
            "--out", str(run / "config.yaml")], "config.yaml"


def case_torchscript_export_given_as_checkpoint(t: Path, run: Path):
    with warnings.catch_warnings():  # torch.jit's deprecation notes
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), t / "model.pt")
    return ["eval", "--checkpoint", str(t / "model.pt")], "TorchScript export"


def case_checkpoint_with_a_malformed_config(t: Path, run: Path):
    state = torch.load(run / "best.pt", weights_only=True)
    torch.save({**state, "config": "cifar10-lt-r100"}, t / "odd.pt")
    return ["eval", "--checkpoint", str(t / "odd.pt")], "malformed config"


def case_checkpoint_whose_weights_do_not_fit_its_config(t: Path, run: Path):
    state = torch.load(run / "best.pt", weights_only=True)
    name = next(iter(state["model"]))
    torch.save({**state, "model": {**state["model"], name: torch.zeros(1)}}, t / "odd.pt")
    return ["eval", "--checkpoint", str(t / "odd.pt")], "do not fit the model"


def case_negative_seed(t: Path, run: Path):
    return train_args(folder(t / "d"), t / "out", "train.seed=-1"), "train.seed"


def case_empty_preset_name(t: Path, run: Path):
    return ["train", "--preset", "", "--out", str(t / "out")], "--preset is empty"


def case_cifar_pickle_that_runs_code(t: Path, run: Path):
    folder_ = t / "evil" / "cifar-10-batches-py"
    folder_.mkdir(parents=True)
    (folder_ / "data_batch_1").write_bytes(pickle.dumps(Payload(t / "pwned.txt")))
    return ["train", "--preset", "cifar10-lt-r100", "--data-dir", str(t / "evil"), "--out",
            str(t / "out"), "--epochs", "1"], "data_batch_1"


def case_data_dir_for_the_bundled_digits(t: Path, run: Path):
    return ["train", "--preset", "digits-lt-demo", "--data-dir", str(folder(t / "d")),
            "--out", str(t / "out"), "--epochs", "1"], "bundled with scikit-learn"


CASES = {name[5:]: fn for name, fn in dict(globals()).items() if name.startswith("case_")}


def test_the_catalogue_is_long_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, trained: Path, tmp_path: Path, capsys, monkeypatch):
    fn = CASES[name]
    needs_patch = "monkeypatch" in fn.__code__.co_varnames
    args, culprit = fn(tmp_path, trained, monkeypatch) if needs_patch else fn(tmp_path, trained)
    before = {**hashes(tmp_path), **hashes(trained)}
    code = main(args)
    monkeypatch.undo()
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("balcon: error: ") and "\n" not in err and "Traceback" not in err
    assert culprit in err, err
    assert any(word in err for word in FIX_WORDS), err
    after = {**hashes(tmp_path), **hashes(trained)}
    assert all(kept(digest, after.get(path), path) for path, digest in before.items()), \
        "a file written before was changed or removed"
    assert not (tmp_path / "pwned.txt").exists()
