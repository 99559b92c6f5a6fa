"""The models that ship inside the package, by the name ``--model`` and ``Summarizer.load`` take.

``debian`` (the default) writes the one-line synopsis of a Debian package description; ``news``
writes the highlights of a news article (CNN/DailyMail). Each directory holds a MODEL.md with its
data, training and scores. A bundled name wins over a directory of the same name: ``--model news``
is the bundled news model, ``--model ./news`` a directory called news.

No torch here: the command line's help and the pipeline's options read these names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PRETRAINED = Path(__file__).parent / "pretrained"


@dataclass(frozen=True)
class BundledModel:
    directory: Path
    serves: str


BUNDLED_MODELS: dict[str, BundledModel] = {
    "debian": BundledModel(
        PRETRAINED / "debian-synopsis", "Debian package descriptions: a one-line synopsis"
    ),
    "news": BundledModel(
        PRETRAINED / "cnndm-news", "news articles: three or four sentences of highlights"
    ),
}
DEFAULT_MODEL = "debian"


def model_name(model: str | None) -> str:
    """What a run records as its model: a bundled model's name, or the directory as given."""
    return DEFAULT_MODEL if model is None else model


def is_bundled(model: str | os.PathLike[str] | None) -> bool:
    """True for None (the default model) and for a bundled model's name."""
    return model is None or (isinstance(model, str) and model in BUNDLED_MODELS)


def model_directory(model: str | os.PathLike[str] | None) -> str | os.PathLike[str]:
    """The checkpoint directory of ``model``: a bundled model's for its name (or for None, the
    default), else ``model`` itself."""
    if model is None:
        return BUNDLED_MODELS[DEFAULT_MODEL].directory
    if isinstance(model, str) and model in BUNDLED_MODELS:
        return BUNDLED_MODELS[model].directory
    return model


def model_choices() -> str:
    """The bundled models for a flag's help: ``'debian' (default): ..., 'news': ...``."""
    return "; ".join(
        f"'{name}'{' (default)' if name == DEFAULT_MODEL else ''}: {model.serves}"
        for name, model in BUNDLED_MODELS.items()
    )


def describe_model(model: str | None) -> str:
    """``the bundled model 'news'`` or ``model PATH``, for messages."""
    if is_bundled(model):
        return f"the bundled model '{model_name(model)}'"
    return f"model {model}"


def other_models(model: str | None) -> str:
    """Where a better model for a corpus can come from, ``model`` aside: the other bundled
    models (``--model news``: what it serves), then training or importing one."""
    others = [
        f"--model {name} ({bundled.serves})"
        for name, bundled in BUNDLED_MODELS.items()
        if name != model_name(model)
    ]
    return ", ".join([*others, "s2s train", "s2s import-opennmt"])
