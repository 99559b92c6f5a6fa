"""Uploads: same values and dtypes as ``torch.tensor``, on the asked device; row repeats: the same
as ``repeat_interleave``."""

from __future__ import annotations

import pytest
import torch

from s2s_model.transfer import interleave, upload


def test_upload_keeps_values_and_dtypes() -> None:
    cpu = torch.device("cpu")
    ints, floats = upload([3, 1, 2], cpu), upload([0.5, 1.0 / 3.0], cpu)
    assert ints.dtype == torch.int64 and ints.tolist() == [3, 1, 2]
    assert floats.dtype == torch.float32 and torch.equal(floats, torch.tensor([0.5, 1.0 / 3.0]))
    mask = torch.tensor([[True, False]])
    assert upload(mask, cpu) is mask


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (0, 2), (1, 6)])
@pytest.mark.parametrize("k", [1, 4])
def test_interleave_repeats_rows_as_repeat_interleave_does(shape: tuple[int, ...], k: int) -> None:
    rows = torch.arange(int(torch.tensor(shape).prod())).view(shape)
    repeated = interleave(rows, k)
    assert torch.equal(repeated, rows.repeat_interleave(k, dim=0))
    repeated.fill_(-1)  # its own memory, as repeat_interleave's: writing it leaves rows alone
    assert rows.numel() == 0 or rows.max() >= 0
