"""The Dataflow Flex Template's parameters, derived from ``SummarizeOptions``.

    python deploy/dataflow/flex_template.py           # rewrite deploy/dataflow/metadata.json
    python deploy/dataflow/flex_template.py --check   # exit 1 if the file is out of date

One parameter per pipeline flag, named as the flag without its dashes. A flag pair such as
``--ban_unk`` / ``--no_ban_unk`` (one destination, set or cleared) is one BOOLEAN parameter:
``ban_unk=true`` or ``ban_unk=false``. Flags hidden from ``--help`` are internal and not offered.

The template launcher passes every parameter as ``--name=value``; argparse refuses a value on a
switch such as ``--overwrite``, so ``flex_main.py`` turns ``--overwrite=true`` back into
``--overwrite`` with ``launcher_argv`` below before ``python -m pipeline`` parses anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
METADATA_FILE = Path(__file__).with_name("metadata.json")
TEMPLATE_NAME = "s2s-summarize"
TEMPLATE_DESCRIPTION = (
    "Summarize text shards with an LSTM seq2seq model; writes summaries/*.parquet,"
    " dead_letter/*.parquet and _SUCCESS.json under the output directory."
)
REQUIRED = ("input", "output")
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
# argparse actions that take no value on the command line.
SWITCH_ACTIONS = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
)


def _options_parser() -> argparse.ArgumentParser:
    if importlib.util.find_spec("pipeline") is None:  # a checkout without the package installed
        sys.path.insert(0, str(ROOT))
    from pipeline.options import SummarizeOptions

    parser = argparse.ArgumentParser(add_help=False)
    SummarizeOptions._add_argparse_args(parser)
    return parser


def _public_actions(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    """(group title, action) for every flag shown in --help, in definition order."""
    found = []
    for group in parser._action_groups:
        for action in group._group_actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                found.append((group.title or "", action))
    order = {id(action): i for i, action in enumerate(parser._actions)}
    return sorted(found, key=lambda pair: order[id(pair[1])])


def _flag(action: argparse.Action) -> str:
    return next(s for s in action.option_strings if s.startswith("--"))


def _negations(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``--X`` -> its negation, where two switches set one destination, one to True and one to
    False (``--ban_unk`` / ``--no_ban_unk``, ``--no_repeat_words`` / ``--allow_repeat_words``)."""
    switches = [a for _, a in _public_actions(parser) if isinstance(a, argparse._StoreConstAction)]
    off = {a.dest: _flag(a) for a in switches if a.const is False}
    return {_flag(a): off[a.dest] for a in switches if a.const is True and a.dest in off}


def _param_type(action: argparse.Action) -> dict[str, Any]:
    if isinstance(action, SWITCH_ACTIONS):
        return {"paramType": "BOOLEAN"}
    if action.choices:
        return {
            "paramType": "ENUM",
            "enumOptions": [{"value": str(choice)} for choice in action.choices],
        }
    if action.type is int or action.type is float or _returns_number(action.type):
        return {"paramType": "NUMBER"}
    return {"paramType": "TEXT"}


def _returns_number(parse: Any) -> bool:
    annotation = getattr(parse, "__annotations__", {}).get("return")
    return annotation in ("int", "float", int, float)


def _default(action: argparse.Action) -> dict[str, str]:
    if isinstance(action, SWITCH_ACTIONS):
        return {}  # unset means the flag is not passed: the pipeline's own default
    if action.default is None or action.default == argparse.SUPPRESS:
        return {}
    return {"defaultValue": str(action.default)}


def template_parameters() -> list[dict[str, Any]]:
    """The metadata.json parameters: one per public pipeline flag (a negation merged)."""
    parser = _options_parser()
    negated = set(_negations(parser).values())
    parameters = []
    for group, action in _public_actions(parser):
        flag = _flag(action)
        if flag in negated:
            continue
        name = flag[2:]
        help_text = " ".join(str(action.help).split())
        if flag in _negations(parser):
            help_text += f" (true: {flag}, false: {_negations(parser)[flag]}; unset: the model's)"
        elif isinstance(action, SWITCH_ACTIONS):
            help_text += f" (true: pass {flag})"
        if name == "input":
            help_text += " (one glob per template run; a directory ending in '/' means all of it)"
        parameters.append(
            {
                "name": name,
                "label": name.replace("_", " ").capitalize(),
                "helpText": help_text,
                "isOptional": name not in REQUIRED,
                "groupName": group,
                **_param_type(action),
                **_default(action),
            }
        )
    return parameters


def metadata() -> dict[str, Any]:
    return {
        "name": TEMPLATE_NAME,
        "description": TEMPLATE_DESCRIPTION,
        "streaming": False,
        "parameters": template_parameters(),
    }


def render() -> str:
    return json.dumps(metadata(), indent=2) + "\n"


def _truth(flag: str, value: str) -> bool | None:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    if not word:
        return None
    raise SystemExit(f"{flag}={value!r}: a switch takes true or false")


def launcher_argv(argv: list[str]) -> list[str]:
    """``argv`` with every ``--switch=true|false`` rewritten as argparse expects it."""
    parser = _options_parser()
    negations = _negations(parser)
    switches = {_flag(a) for _, a in _public_actions(parser) if isinstance(a, SWITCH_ACTIONS)}
    rewritten = []
    for token in argv:
        flag, equals, value = token.partition("=")
        if not equals or flag not in switches:
            rewritten.append(token)
            continue
        on = _truth(flag, value)
        if on:
            rewritten.append(flag)
        elif on is False and flag in negations:
            rewritten.append(negations[flag])
    return rewritten


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--check", action="store_true", help="exit 1 if metadata.json is stale")
    args = cli.parse_args()
    text = render()
    if args.check:
        if METADATA_FILE.read_text(encoding="utf-8") != text:
            raise SystemExit(f"{METADATA_FILE} is stale: run python {Path(__file__).name}")
        return
    METADATA_FILE.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
