"""docs/API.md's tables of ModelConfig and TrainConfig: one row per field, with the field's own
default and help text, so that the page cannot drift from the code."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from s2s_model.config import FieldSpec, ModelConfig, TrainConfig, field_specs

API = Path(__file__).resolve().parents[1] / "docs" / "API.md"


def expected_row(spec: FieldSpec) -> str:
    if spec.default is dataclasses.MISSING:
        default = "required"
    elif isinstance(spec.default, tuple):
        default = f"`{list(spec.default)}`"
    else:
        default = f"`{spec.default!r}`".replace("'", '"')
    return f"| `{spec.name}` | {default} | {spec.help} |"


@pytest.mark.parametrize("cls", [ModelConfig, TrainConfig])
def test_every_field_has_its_row_in_the_api_page(cls: type) -> None:
    text = API.read_text(encoding="utf-8")
    missing = [expected_row(s) for s in field_specs(cls) if expected_row(s) not in text]
    assert missing == [], f"docs/API.md lacks or misstates these {cls.__name__} rows: {missing}"
