"""`s2s import-opennmt`: read an OpenNMT-py 3.x checkpoint safely and save it in our format.

OpenNMT-py checkpoints are pickles (tensors, vocabulary lists and an ``argparse.Namespace`` of
options). They are read with ``torch.load(weights_only=True)``, PyTorch's restricted unpickler,
allowing exactly one non-tensor type, ``argparse.Namespace``: anything else in the file is
refused before it can run. This is the only place the project unpickles anything; the pipeline
only ever reads the converted safetensors checkpoint.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from s2s_cli.command import S2SCommand

if TYPE_CHECKING:
    from s2s_model import DecodeConfig

# torch and the model are imported inside the functions: `s2s --help` stays instant.
ALLOWED_GLOBALS = [argparse.Namespace]


def read_opennmt_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's dict, read by the restricted unpickler (tensors, containers, Namespace)."""
    import torch

    from s2s_model.opennmt import OpenNMTImportError

    if not path.is_file():
        raise OpenNMTImportError(f"{path} does not exist: pass an OpenNMT-py model_step_*.pt file")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OpenNMTImportError(
            f"{path} is not a readable OpenNMT-py checkpoint ({first}); only tensors, plain"
            " containers and argparse.Namespace are accepted"
        ) from None
    if not isinstance(data, dict) or not {"model", "generator", "vocab", "opt"} <= set(data):
        raise OpenNMTImportError(
            f"{path} lacks the model/generator/vocab/opt entries of an OpenNMT-py 3.x checkpoint"
        )
    return data


def import_opennmt(checkpoint: Path, output: Path) -> DecodeConfig:
    """Convert ``checkpoint`` into our checkpoint directory ``output``; returns its decoding."""
    from s2s_model import save_checkpoint
    from s2s_model.opennmt import OpenNMTImportError, convert_opennmt

    data = read_opennmt_checkpoint(checkpoint)
    options = vars(data["opt"]) if isinstance(data["opt"], argparse.Namespace) else data["opt"]
    vocab = data["vocab"]
    if not isinstance(vocab, dict) or "src" not in vocab:
        raise OpenNMTImportError(f"{checkpoint}: the vocabulary is not OpenNMT-py 3.x's dict")
    if vocab.get("tgt", vocab["src"]) != vocab["src"]:
        raise OpenNMTImportError(f"{checkpoint}: separate source/target vocabularies")
    model, tokenizer, decode = convert_opennmt(
        data["model"], data["generator"], list(vocab["src"]), options
    )
    metadata = {
        "imported_from": str(checkpoint),
        "opennmt_options": {k: v for k, v in options.items() if _plain(v)},
    }
    save_checkpoint(output, model, tokenizer, decode=decode, metadata=metadata)
    return decode


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


@click.command("import-opennmt", cls=S2SCommand)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
def import_opennmt_command(checkpoint: Path, output: Path) -> None:
    """Convert an OpenNMT-py 3.x RNN CHECKPOINT (.pt) into an s2s checkpoint directory OUTPUT.

    The result uses a word-level tokenizer with OpenNMT-py's vocabulary: feed it text tokenized
    the way the model was trained. Its default decoding reproduces OpenNMT-py's beam search
    (--compat opennmt).
    """
    decode = import_opennmt(checkpoint, output)
    click.echo(f"wrote {output} (decoding: beam {decode.beam_size}, compat {decode.compat})")
