"""LaTeX for the report's tables: booktabs ``longtable`` s that fit the text block of the standard ``article`` class
(10 pt, A4 or letter: 345 pt), each with a caption and a label. Column widths are estimated from their characters,
rounded up: a table too wide is cut into parts by columns, its identity columns in each; a longtable breaks across
pages (a float taller than a page left the first page blank). Text is wrapped and left-aligned, numbers right-aligned.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from string import Template

import pandas as pd

TEXT_WIDTH = 345.0  # pt: \textwidth of article at 10 pt, on A4 and on letter paper
COLSEP = 4.0  # pt: \tabcolsep in the tables
TEXT_WRAP, HEADER_WRAP = 20, 12  # characters per line of a text cell, of a header
PREAMBLE = "% needs \\usepackage{booktabs} and \\usepackage{longtable}\n"
NARROW = frozenset(" .,:;()/[]'!|ifjlt-")  # about 2.5 pt at \footnotesize; a digit is 4 pt
WIDE = frozenset("±×%&mwMW")  # about 6.6 pt
_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}"}
_SPECIAL |= {"^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}", "±": r"$\pm$"}
_SPECIAL |= {"×": r"$\times$", "–": "--", "≤": r"$\le$", "…": r"\dots{}"}
_PART = Template(r"""\begingroup
\footnotesize\setlength{\tabcolsep}{${colsep}pt}${again}
\begin{longtable}{@{}${spec}@{}}
${title} \\
\toprule ${head} \\ \midrule \endfirsthead
\multicolumn{${n}}{@{}l}{\tablename~\thetable{} (continued)} \\
\toprule ${head} \\ \midrule \endhead
\bottomrule \endfoot
${rows}
\end{longtable}
\endgroup
""")


def escape(text: str) -> str:
    """Text for LaTeX's text mode: every special character escaped, ``± × – ≤ …`` as LaTeX writes them."""
    return re.sub(r"[\\&%$#_{}~^<>±×–≤…]", lambda m: _SPECIAL[m.group()], str(text))


def _lines(text: str, width: int | None) -> list[str]:
    """A cell's lines: its own (``\\n``), each wrapped at ``width`` characters when given."""
    parts = str(text).split("\n")
    return [line for part in parts for line in (textwrap.wrap(part, width) or [""])] if width else parts


def _width(line: str) -> float:
    return sum(2.7 if c in NARROW else 6.6 if c in WIDE or c.isupper() else 4.3 for c in line)


def _cell(lines: Sequence[str], align: str, valign: str = "t") -> str:
    """One line as it is, several stacked in a tabular."""
    body = r" \\ ".join(map(escape, lines))
    return (
        body if len(lines) == 1 else rf"\begin{{tabular}}[{valign}]{{@{{}}{align}@{{}}}}{body}\end{{tabular}}"
    )


def _parts(widths: Sequence[float], repeat: int) -> list[list[int]]:
    """Columns per part: the first ``repeat`` in every part, then as many of the others as fit the text block."""
    parts: list[list[int]] = [[]]
    for i in range(repeat, len(widths)):
        if parts[-1] and sum(widths[j] for j in [*range(repeat), *parts[-1], i]) > TEXT_WIDTH:
            parts.append([])
        parts[-1].append(i)
    return [list(range(repeat)) + part for part in parts]


def table(frame: pd.DataFrame, caption: str, label: str, text: int = 1, group: Sequence[str] = ()) -> str:
    """``frame`` (plain text; ``\\n`` breaks a line) as LaTeX that fits a page: its first ``text`` columns
    left-aligned and wrapped, they and the next one in every part, and a heading row wherever the values of the
    ``group`` columns (not shown as columns) change."""
    heads = [", ".join(map(str, values)) for values in frame[list(group)].itertuples(index=False)]
    frame = frame.drop(columns=list(group))
    align = ["l" if i < text else "r" for i in range(len(frame.columns))]
    cells = [
        [_lines(n, HEADER_WRAP)] + [_lines(v, TEXT_WRAP * (i < text)) for v in frame[n]]
        for i, n in enumerate(frame)
    ]
    widths = [max(map(_width, sum(column, []))) + 2 * COLSEP for column in cells]
    out = [PREAMBLE]
    for k, part in enumerate(_parts(widths, text + 1)):
        wrap = int(sum(widths[c] for c in part) / 4.3)
        rows = []
        for r, previous in enumerate([None, *heads][: len(heads)]):  # no rows: none
            if heads[r] and heads[r] != previous:
                rows += [r"\addlinespace"] * (previous is not None)
                rows.append(
                    rf"\multicolumn{{{len(part)}}}{{@{{}}l}}{{\emph{{{_cell(_lines(heads[r], wrap), 'l')}}}}} \\"
                )
            rows.append(" & ".join(_cell(cells[c][r + 1], align[c]) for c in part) + r" \\")
        title = rf"\caption{{{escape(caption)}}}\label{{{label}}}"
        title = title if k == 0 else r"\caption{(continued)}"  # the same number: \addtocounter below
        head = " & ".join(_cell(cells[c][0], align[c], "b") for c in part)
        spec = "".join(align[c] for c in part)
        fill = {"colsep": f"{COLSEP:g}", "again": r"\addtocounter{table}{-1}" * (k > 0), "n": len(part)}
        out.append(_PART.substitute(fill, spec=spec, title=title, head=head, rows="\n".join(rows)))
    return "\n".join(out)
