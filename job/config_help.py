"""Every `TrainConfig` field with its type, default and one line of meaning, for `covidct config`
and the epilog of `covidct train --help`.

The meaning is the field's own comment in `job/config/schema.py` (the comment at the end of its
line, else the comment block just above it), read from the source once: one text serves the
reader of the code and the user of the CLI, and a test fails when a field has none.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import re
import tokenize
import typing

from job.config.schema import TrainConfig

_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:")


@functools.lru_cache(maxsize=1)
def meanings() -> dict[str, str]:
    """{field name: its comment} for every field of `TrainConfig` that has one."""
    source = inspect.getsource(TrainConfig)
    trailing, block, above = {}, {}, []
    last_row = -1
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if tok.line.strip().startswith("#"):  # a comment line: part of a block
                above = above + [text] if tok.start[0] == last_row + 1 else [text]
                last_row = tok.start[0]
            else:
                name = _FIELD_LINE.match(tok.line)
                if name:
                    trailing[name.group(1)] = text
        elif tok.type == tokenize.NAME and tok.start[1] == 4:  # a statement in the class body
            if above and last_row == tok.start[0] - 1:  # its first sentence: one line
                block[tok.string] = re.split(r"(?<=\.)\s+(?=[A-Z])", " ".join(above))[0]
            above = []
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    return {n: trailing.get(n) or block[n] for n in names if trailing.get(n) or n in block}


def rows() -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) per field, in the dataclass's order."""
    hints = typing.get_type_hints(TrainConfig)
    help_of = meanings()
    return [(f.name, hints[f.name].__name__, repr(f.default), help_of.get(f.name, ""))
            for f in dataclasses.fields(TrainConfig)]


def table(width: int = 100) -> str:
    """The fields as aligned text: `name  type  default  meaning`, long meanings wrapped."""
    import textwrap

    data = rows()
    w_name = max(len(r[0]) for r in data)
    w_type = max(len(r[1]) for r in data)
    w_def = max(len(r[2]) for r in data)
    indent = w_name + w_type + w_def + 6
    out = []
    for name, kind, default, meaning in data:
        head = f"{name:<{w_name}}  {kind:<{w_type}}  {default:<{w_def}}  "
        wrapped = textwrap.wrap(meaning, max(width - indent, 30)) or [""]
        out.append(head + wrapped[0])
        out += [" " * indent + more for more in wrapped[1:]]
    return "\n".join(out)
