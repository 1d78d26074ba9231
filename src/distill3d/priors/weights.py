"""Where real prior weights come from: a local folder or the Hugging Face cache, never the network.

Every loader here passes ``local_files_only=True``, so nothing is downloaded whatever ``HF_HUB_OFFLINE``
says; a model that is not on disk becomes a ``UserError`` whose one line names what to download, the
command that downloads it, and the option that points distill3d at a folder instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from distill3d.core.errors import UserError

T = TypeVar("T")

SD_EXTRA_HINT = "pip install 'distill3d[sd]'"


@dataclass(frozen=True)
class WeightsSpec:
    """What a set of weights is, for the one-line message when it is missing."""

    what: str  # "Stable Diffusion", "IP-Adapter", "ControlNet"
    option: str  # the command-line option that takes a local folder instead
    layout: str  # what that folder must contain


SD_WEIGHTS = WeightsSpec("Stable Diffusion", "--model",
                         "a diffusers folder with unet/, vae/, text_encoder/, tokenizer/, scheduler/")
IP_ADAPTER_WEIGHTS = WeightsSpec("IP-Adapter", "--ip-adapter",
                                 "a folder with <subfolder>/<weight file> and <subfolder>/image_encoder/")
CONTROLNET_WEIGHTS = WeightsSpec("ControlNet", "--controlnet",
                                 "a diffusers ControlNet folder with config.json and its weights")
#: MVDream's checkpoint holds its OpenCLIP text encoder but not the BPE tokenizer; Stable Diffusion 2.1-base ships
#: the same one (pad token "!" = id 0, as OpenCLIP pads).
MVDREAM_TOKENIZER = WeightsSpec("Tokenizer for MVDream (Stable Diffusion 2.1-base's OpenCLIP tokenizer)",
                                "MVDreamConfig(tokenizer=...)",
                                "a folder with tokenizer/vocab.json and tokenizer/merges.txt")


def _looks_local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()


def missing_message(spec: WeightsSpec, source: str) -> str:
    """One line: what is missing, where it was looked for, how to get it."""
    fetch = ("the folder does not exist or does not hold them: check the path"
             if _looks_local(source) else
             f"download them with `huggingface-cli download {source}` on a machine with internet "
             f"(they land in the Hugging Face cache)")
    return (f"{spec.what} weights not found at '{source}': {fetch}, "
            f"or pass {spec.option} /path/to/dir ({spec.layout})")


def load_local(spec: WeightsSpec, source: str, load: Callable[[str], T]) -> T:
    """Call ``load`` with the local folder ``source`` names, or with ``source`` as a Hugging Face id to be
    found in the local cache; a missing or incomplete model becomes a one-line ``UserError``.

    diffusers and transformers report a model absent from the folder or the cache as ``OSError`` (which
    includes huggingface_hub's not-found errors) when ``local_files_only=True``.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        source_or_path = str(path)
    elif _looks_local(source):
        raise UserError(missing_message(spec, source), exit_code=1)
    else:
        source_or_path = source  # a Hugging Face id, looked up in the local cache only
    try:
        return load(source_or_path)
    except OSError as e:
        raise UserError(missing_message(spec, source), exit_code=1) from e


def import_diffusers():
    """diffusers and transformers, or a ``UserError`` naming the extra that installs them."""
    try:
        import diffusers
        import transformers
    except ImportError as e:
        raise UserError(f"the Stable Diffusion prior needs diffusers and transformers: {SD_EXTRA_HINT}",
                        exit_code=1) from e
    return diffusers, transformers
