"""`availlab completion bash`: a completion script written from the parser itself, so a verb or an
option added anywhere completes without a second list to keep. Install it with
`availlab completion bash > /etc/bash_completion.d/availlab` (or source it from ~/.bashrc)."""

from __future__ import annotations

import argparse
import shlex

SCRIPT = """# availlab bash completion (written by `availlab completion bash`)
_availlab() {{
  local cur path w
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  path="_"
  for w in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
    [ -n "${{_availlab_words["$path $w"]+x}}" ] && path="$path $w"
  done
  COMPREPLY=( $(compgen -W "${{_availlab_words[$path]}}" -- "$cur") )
}}
declare -gA _availlab_words=(
{entries}
)
complete -o default -F _availlab availlab
"""


def _walk(parser: argparse.ArgumentParser, path: str, out: dict[str, list[str]]) -> None:
    words: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words.append(name)
                _walk(sub, f"{path} {name}".strip(), out)
        else:
            words += [o for o in action.option_strings if o.startswith("--")]
    out[path] = words


def bash(parser: argparse.ArgumentParser) -> str:
    """The completion script: after each verb path, its sub-verbs and long options."""
    table: dict[str, list[str]] = {}
    _walk(parser, "_", table)  # "_": the root (bash refuses an empty key)
    entries = "\n".join(f"  [{shlex.quote(path)}]={shlex.quote(' '.join(words))}" for path, words in sorted(table.items()))
    return SCRIPT.format(entries=entries)


def add_parsers(sub: argparse._SubParsersAction, root: argparse.ArgumentParser) -> None:
    c = sub.add_parser("completion", help="print a shell completion script (bash): "
                                          "availlab completion bash > /etc/bash_completion.d/availlab")
    c.add_argument("shell", choices=["bash"], help="the shell to complete in")

    def cmd(args: argparse.Namespace) -> int:
        print(bash(root), end="")
        return 0

    c.set_defaults(func=cmd)
