"""SummarizeOptions: flags defined once, decode flags mirroring DecodeConfig, strict parsing."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import DirectOptions

from pipeline.options import (
    DEFAULT_MAX_DOC_CHARS,
    GPU_BATCH_WINDOW,
    GPU_LOCAL_BUNDLE_THREADS,
    OptionsError,
    SummarizeOptions,
    format_flags_help,
    inputs_as_flags,
    parse_options,
)
from s2s_model import DecodeConfig
from s2s_model.config import GPU_MAX_BATCH_TOKENS, field_specs
from s2s_model.device import DeviceError


def test_every_decode_field_is_a_flag_with_its_help() -> None:
    help_text = " ".join(format_flags_help().split())
    for field in dataclasses.fields(DecodeConfig):
        assert f"--{field.name}" in help_text
        assert " ".join(field.metadata["help"].split()) in help_text


def test_decode_overrides_hold_only_the_flags_given() -> None:
    options = parse_options(["--beam_size", "3", "--length_penalty", "wu", "--no_ban_unk"])
    assert options.decode_overrides() == {"beam_size": 3, "length_penalty": "wu", "ban_unk": False}
    assert parse_options(["--ban_unk"]).decode_overrides() == {"ban_unk": True}
    assert parse_options([]).decode_overrides() == {}
    config = DecodeConfig.from_dict({**DecodeConfig().to_dict(), **options.decode_overrides()})
    assert config.beam_size == 3 and config.length_penalty == "wu"


def test_defaults_and_repeated_inputs() -> None:
    options = parse_options(["--input", "a/*", "--input", "b.jsonl"]).view_as(SummarizeOptions)
    assert options.input == ["a/*", "b.jsonl"]
    assert (options.input_format, options.device, options.torch_threads) == ("auto", "auto", 1)
    assert options.runtime_settings().max_batch_tokens == 6000 and not options.overwrite


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--beam_sise", "3"], "unknown flag --beam_sise: did you mean --beam_size?"),
        (["--max_batch_token=5"], "did you mean --max_batch_tokens?"),
        (["--torch_threads", "0"], "argument --torch_threads: 0 must be at least 1"),
        (["--max_dead_letter_fraction", "1.5"], "1.5 must be between 0 and 1"),
        (["--length_penalty", "huge"], "invalid choice: 'huge'"),
        (["--max_len", "ten"], "invalid int value: 'ten'"),
        (["--direct_num_workers", "two"], "argument --direct_num_workers"),
    ],
)
def test_bad_flags_raise_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(OptionsError) as caught:
        parse_options(argv)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_beam_flags_and_runner_specific_flags_pass_through() -> None:
    options = parse_options(["--runner", "PortableRunner", "--flink_conf_dir=/etc/flink"])
    assert options.get_all_options()["runner"] == "PortableRunner"


def test_positional_inputs_become_input_flags() -> None:
    tokens = ["a.txt", "--output", "out", "b/*.gz", "--overwrite", "--beam_size", "3", "c"]
    assert inputs_as_flags(tokens) == [
        "--input", "a.txt", "--input", "b/*.gz", "--input", "c",
        "--output", "out", "--overwrite", "--beam_size", "3",
    ]  # fmt: skip
    assert inputs_as_flags(["x", "--output=out", "--unknown_switch"]) == [
        "--input", "x", "--output=out", "--unknown_switch",
    ]  # fmt: skip


def test_an_unknown_flag_followed_by_a_value_is_refused_not_read_as_an_input() -> None:
    # Issue 13: `--reuse other.txt` once summarized other.txt as a second input.
    with pytest.raises(OptionsError, match=r"unknown flag --unknown_flag: .*--unknown_flag=x"):
        inputs_as_flags(["in.txt", "--output=out", "--unknown_flag", "x"])
    with pytest.raises(OptionsError, match="did you mean --beam_size"):
        inputs_as_flags(["in.txt", "--beam_szie", "2"])
    assert inputs_as_flags(["in.txt", "--flink_conf_dir=/etc/flink"]) == [
        "--input", "in.txt", "--flink_conf_dir=/etc/flink",
    ]  # fmt: skip


def test_all_cores_by_default_on_one_local_worker_and_one_search_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 6)

    def threads(*flags: str) -> int:
        options = parse_options(["--input", "x", "--output", "y", *flags])
        return options.runtime_settings().search_threads

    assert threads() == 6
    assert threads("--runner", "FnApiRunner") == 6
    assert threads("--direct_num_workers", "2") == 1
    assert threads("--runner", "DataflowRunner") == 1
    assert threads("--search_threads", "3") == 3
    assert threads("--runner", "DataflowRunner", "--search_threads", "2") == 2
    assert threads("--device", "cuda", "--runner", "DataflowRunner") == 1
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert threads("--device", "cuda") == 1
    assert threads() == 1


@pytest.mark.parametrize("gpu_seen", [True, False])
def test_a_gpu_worker_gets_large_batches_and_one_search_by_default(
    monkeypatch: pytest.MonkeyPatch, gpu_seen: bool
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    monkeypatch.setattr("torch.cuda.is_available", lambda: gpu_seen)

    def chosen(*flags: str) -> tuple[int, int, int]:
        options = parse_options(["--input", "x", "--output", "y", *flags])
        settings = options.runtime_settings()
        return settings.max_batch_tokens, options.window(settings.device), settings.search_threads

    gpu, cpu = (GPU_MAX_BATCH_TOKENS, GPU_BATCH_WINDOW, 1), (6000, 512, 6)
    assert chosen() == (gpu if gpu_seen else cpu)
    assert chosen("--device", "cpu") == cpu
    assert chosen("--device", "auto", "--quantize", "int8") == cpu
    assert chosen("--device", "cuda", "--runner", "DataflowRunner") == gpu
    assert chosen("--device", "auto", "--runner", "DataflowRunner") == (6000, 512, 1)
    flags = ("--max_batch_tokens", "999", "--batch_window", "7", "--search_threads", "2")
    assert chosen("--device", "cuda", "--runner", "DataflowRunner", *flags) == (999, 7, 2)
    if gpu_seen:
        assert chosen("--device", "cuda", *flags) == (999, 7, 2)
    else:  # local workers run here: a GPU this machine lacks is refused while planning
        with pytest.raises(DeviceError, match="device 'cuda' asked for"):
            chosen("--device", "cuda")


@pytest.mark.parametrize("gpu_seen", [True, False])
def test_a_local_gpu_run_works_two_windows_at_once_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, gpu_seen: bool
) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: gpu_seen)

    def workers(*flags: str) -> tuple[bool, int, str]:
        options = parse_options(["--input", "x", "--output", "y", *flags])
        changed = options.overlap_on_gpu(options.runtime_settings().device)
        direct = options.view_as(DirectOptions)
        return changed, direct.direct_num_workers, direct.direct_running_mode

    overlapped = (True, GPU_LOCAL_BUNDLE_THREADS, "multi_threading")
    assert workers() == (overlapped if gpu_seen else (False, 1, "in_memory"))
    assert workers("--device", "cpu") == (False, 1, "in_memory")
    assert workers("--device", "cuda", "--runner", "DataflowRunner") == (False, 1, "in_memory")
    if gpu_seen:
        assert workers("--device", "cuda") == overlapped
        mode = ("--direct_running_mode", "multi_processing", "--direct_num_workers", "3")
        assert workers("--device", "cuda", *mode) == (False, 3, "multi_processing")
        one = ("--direct_running_mode", "multi_threading")
        assert workers("--device", "cuda", *one) == (False, 1, "multi_threading")


def test_help_shows_each_default_once() -> None:
    text = " ".join(format_flags_help().split())
    assert f"(default: {DEFAULT_MAX_DOC_CHARS})" in text
    assert "--if_finished {fail,skip}" in text and "(default: fail)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: the model's, else 4)" in text  # decode flags say it themselves, once
    assert text.count("(default: the model's, else 4)") == 1


def test_a_ban_is_turned_off_by_an_allow_switch() -> None:
    def decode(*flags: str) -> dict[str, object]:
        return parse_options(["--input", "x", "--output", "y", *flags]).decode_overrides()

    assert decode("--no_repeat_words") == {"no_repeat_words": True}
    assert decode("--allow_repeat_words") == {"no_repeat_words": False}
    assert decode("--no_ban_unk") == {"ban_unk": False}
    with pytest.raises(OptionsError, match="did you mean"):
        parse_options(["--input", "x", "--no_no_repeat_words"])


def test_readmes_flag_table_names_every_flag() -> None:
    """Decode flags are covered by the table's "every DecodeConfig field" row."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = [line for line in readme.splitlines() if line.startswith("| `") and "`--" in line]
    named = {flag for line in table for flag in re.findall(r"`(--\w+)`", line.split("|")[1])}
    parser = argparse.ArgumentParser(add_help=False)
    SummarizeOptions._add_argparse_args(parser)
    decode = {f"--{spec.name}" for spec in field_specs(DecodeConfig)}
    decode |= {f"--{spec.off_switch}" for spec in field_specs(DecodeConfig)}
    ours = {a.option_strings[0] for a in parser._actions if a.option_strings}
    assert ours - decode - named == set()
