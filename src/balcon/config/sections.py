"""The sections of a run's configuration, as dataclasses, and the values they accept."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "BAD_IMAGE_ACTIONS",
    "CLASSIFIERS",
    "CONV_INITS",
    "CUTOUT_FILLS",
    "DATASETS",
    "EXPORT_FORMATS",
    "FINETUNE_MODES",
    "PIPELINES",
    "PRECISIONS",
    "PROFILES",
    "REPORT_ORDER",
    "SCHEDULES",
    "SHORTCUTS",
    "SPLITS",
    "VIEW_STRATEGIES",
    "VIEW_STRATEGY_PAIRS",
    "VIEW_STYLES",
    "Config",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
]

CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2023, 0.1994, 0.2010]

DATASETS = ("cifar10", "cifar100", "imagefolder", "digits")
#: ``auto``: resolved when a run starts, by the hardware (``balcon.engine.device``).
PRECISIONS = ("auto", "off", "bf16", "fp16")
#: Augmentation families: CIFAR-LT's 32-px views, or ImageNet-LT / iNaturalist's 224-px views.
VIEW_STYLES = ("cifar", "imagenet")
#: The contrastive branch's strategies and their (view 2, view 3) kinds, as the official
#: ImageNet code names them ("rand" stands for "randstack").
VIEW_STRATEGY_PAIRS: dict[str, tuple[str, str]] = {
    "sim-sim": ("sim", "sim"),
    "sim-rand": ("randstack", "sim"),
    "rand-rand": ("randstack", "randstack"),
}
VIEW_STRATEGIES = tuple(VIEW_STRATEGY_PAIRS)
#: CIFAR ResNet shortcuts (He et al.): A zero-pads, B projects with a 1x1 convolution.
SHORTCUTS = ("A", "B")
#: CIFAR ResNet convolution inits: kaiming fan-in (LDAM-DRW), kaiming fan-out, PyTorch's.
CONV_INITS = ("kaiming", "kaiming-fan-out", "torch")
#: Long-tailed subset profiles: exponential decay of class counts, or two steps.
PROFILES = ("exp", "step")
#: Classifiers: cosine (normalised weights and features, as BCL) or a plain linear layer.
CLASSIFIERS = ("cosine", "linear")
#: lr schedules after the warm-up: steps at the milestones, or cosine decay.
SCHEDULES = ("step", "cosine")
#: A run's data splits; the final report measures the first of ``REPORT_ORDER`` present.
SPLITS = ("train", "val", "test")
REPORT_ORDER = ("test", "val", "train")
#: What ``balcon export`` writes.
EXPORT_FORMATS = ("onnx", "torchscript")
#: What view 1's Cutout hole holds: black (cut before normalising) or the mean colour.
CUTOUT_FILLS = ("black", "mean")
#: What an unreadable image does: stop the run, or be skipped (named and counted).
BAD_IMAGE_ACTIONS = ("stop", "skip")
#: Where training views are made: per image in DataLoader workers (PIL), or a batch at a
#: time on the training device from the set held there as uint8; auto picks per run.
PIPELINES = ("auto", "workers", "device")
#: What of a pretrained encoder trains (``balcon.models.finetune``).
FINETUNE_MODES = ("full", "linear", "partial", "lora")


@dataclass
class DataConfig:
    """Where the images come from and how they are made long-tailed and augmented.

    ``dataset``: ``cifar10`` / ``cifar100`` (pickles or an ImageFolder copy), ``digits``
    (bundled) or ``imagefolder``: ``--data-dir`` holds ``train/`` with optional ``val/``
    and ``test/`` class folders, or, with ``train_split`` set, the images listed in
    split files (``relative/path label`` per line, paths relative to ``--data-dir``; a
    split file's own path is absolute or relative to ``--data-dir``). ``num_classes``
    fixes C for split files (null: largest training label + 1). Model selection uses
    val when there is one; the final report uses test when there is one.
    ``view_style`` picks the 32-px CIFAR views or the 224-px ImageNet views;
    ``view_strategy`` the contrastive pair of the latter (``randaugment`` is timm's
    RandAugment config string of the "rand" and "randstack" views). ``cutout_fill``
    is what the CIFAR view 1's Cutout hole holds: ``black`` (cut before normalising,
    as the published code) or ``mean`` (cut after: the dataset's mean colour).
    ``pipeline`` makes the training views per image in DataLoader workers (``workers``)
    or a batch at a time on the training device (``device``: the cifar views only; the
    set is held there as uint8); ``auto`` picks ``device`` for the cifar views when the
    set takes at most half the device's free memory, else ``workers``.
    ``on_bad_image``: ``stop`` at the first unreadable image, or ``skip`` every one
    (found by reading each image once when the data loads; named in the log, counted in
    metrics and summary); more than ``max_bad_images`` (null: 0.1% of a split, at least
    1) stops the run.
    """

    dataset: str = "cifar10"
    num_classes: int | None = None
    train_split: str | None = None
    val_split: str | None = None
    test_split: str | None = None
    imbalance: float | None = None
    profile: str = "exp"
    subsample_seed: int = 0
    image_size: int = 32
    mean: list[float] = field(default_factory=lambda: list(CIFAR_MEAN))
    std: list[float] = field(default_factory=lambda: list(CIFAR_STD))
    hflip: bool = True
    sim_crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    sim_blur_prob: float = 0.0
    cutout_fill: str = "black"
    view_style: str = "cifar"
    view_strategy: str = "sim-sim"
    randaugment: str = "rand-n2-m10-mstd0.5"
    pipeline: str = "auto"
    on_bad_image: str = "stop"
    max_bad_images: int | None = None
    num_workers: int | None = None


@dataclass
class ModelConfig:
    """Backbone and heads.

    ``encoder``: a CIFAR ResNet (``resnet8``, ``resnet20``, ``resnet32``, ... any 6n+2
    depth torchvision does not also name), a torchvision ResNet family model
    (``resnet50``, ``resnext50_32x4d``, ...), or ``timm:<model>``. ``pretrained``: a
    local state-dict file for the encoder, or ``timm`` for timm's own weights
    (downloaded; timm encoders only). ``channels_last`` runs the model in NHWC (10%
    faster per step on a 2-core AMD EPYC in float32, every round; BENCHMARKS.md,
    "Precision on the CPU"; the usual choice on recent GPUs).
    ``shortcut`` (``A``: zero-padding, ``B``: 1x1 convolution) and ``conv_init``
    (``kaiming``: fan-in, as LDAM-DRW; ``kaiming-fan-out``; ``torch``:
    PyTorch's own) shape the CIFAR ResNets only.
    ``finetune``: what of the encoder trains: ``full`` (all of it), ``linear`` (none of
    it), ``partial`` (its last ``trainable_blocks`` blocks) or ``lora`` (low-rank
    adapters of rank ``lora_rank`` on a ViT's linear layers; needs ``balcon[lora]``); the
    classifier and heads always train. ``freeze_bn`` keeps the encoder's BatchNorm
    statistics as they are (eval mode). See ``balcon.models.finetune``.
    """

    encoder: str = "resnet32"
    shortcut: str = "A"
    conv_init: str = "kaiming"
    pretrained: str | None = None
    channels_last: bool = True
    classifier: str = "cosine"
    cosine_scale: float = 30.0
    head_hidden: int = 512
    head_dim: int = 128
    finetune: str = "full"
    trainable_blocks: int = 1
    freeze_bn: bool = False
    lora_rank: int = 8


@dataclass
class LossConfig:
    """Training method and the settings of its losses.

    ``method`` is a name of the method table (``balcon.methods``: ``balcon train --help``
    lists them). ``alpha`` and ``beta`` weigh the classifier and contrastive losses of the
    methods whose table entry names them; ``tau`` is the logit adjustment's strength and
    ``temperature`` the contrastive loss's.
    """

    method: str = "bcl"
    temperature: float = 0.1
    alpha: float = 2.0
    beta: float = 0.6
    tau: float = 1.0


@dataclass
class OptimConfig:
    """SGD with a linear warm-up, then step decay (or cosine); the encoder's parameters
    at ``encoder_lr_scale`` times the learning rate of the classifier and heads."""

    lr: float = 0.15
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "step"
    warmup_epochs: int = 5
    milestones: list[int] = field(default_factory=lambda: [160, 180])
    gamma: float = 0.1
    encoder_lr_scale: float = 1.0


@dataclass
class TrainConfig:
    """Length, batch, precision, evaluation cadence and seed of a run.

    ``precision``: ``auto`` (bf16 on GPUs that have it, else fp16; on the CPU bf16 where
    it is native, else float32), ``off`` (float32, the paper's), ``bf16`` or ``fp16``
    (CUDA only).
    ``batch_size`` is global: under ``torchrun`` each of the N processes takes
    ``batch_size / N``. ``sync_bn`` turns BatchNorm into SyncBatchNorm in multi-GPU runs.
    ``checkpoint_minutes``: minutes between mid-epoch ``last.pt`` writes (null: at epoch
    ends only; a preemption signal always writes one). ``tensorboard``: also write the
    logged scalars to ``RUN_DIR/tensorboard/`` (needs ``pip install 'balcon[tensorboard]'``).
    ``compile``: train through ``torch.compile`` (the training step's forward and backward;
    evaluation and checkpoints stay eager). It compiles for a minute or so at the start
    and again after a resume; on the CPU it needs a C++ compiler.
    """

    epochs: int = 200
    batch_size: int = 256
    precision: str = "auto"
    eval_every: int = 10
    seed: int = 0
    sync_bn: bool = False
    checkpoint_minutes: float | None = 30.0
    tensorboard: bool = False
    compile: bool = False


@dataclass
class Config:
    """A whole run's configuration."""

    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of the config (YAML, JSON and checkpoint friendly)."""
        return asdict(self)
