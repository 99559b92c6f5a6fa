"""Uploads: same values and dtypes as ``torch.tensor``, on the asked device."""

from __future__ import annotations

import torch

from s2s_model.transfer import upload


def test_upload_keeps_values_and_dtypes() -> None:
    cpu = torch.device("cpu")
    ints, floats = upload([3, 1, 2], cpu), upload([0.5, 1.0 / 3.0], cpu)
    assert ints.dtype == torch.int64 and ints.tolist() == [3, 1, 2]
    assert floats.dtype == torch.float32 and torch.equal(floats, torch.tensor([0.5, 1.0 / 3.0]))
    mask = torch.tensor([[True, False]])
    assert upload(mask, cpu) is mask
