"""A small document model (sections, paragraphs, tables, figures, code blocks) and its two renderers.

A report is built once, as a :class:`Document`; :func:`to_markdown` and :func:`to_latex` walk
the same tree, so every sentence, table row and caption exists once and both files say the same.

Inline text (:data:`Text`) is a string, an inline node, or a tuple of them:

* a ``str`` is plain text, escaped for each format;
* :class:`Code` is inline code (`` `x` `` / ``\\texttt{x}``);
* :class:`Alt` is text already written for each format (a label of :data:`fastmlp.config.RULES`:
  ``Alt("β1", r"$\\beta_1$")``);
* :class:`Strong` is bold text;
* :class:`Ref` points at a figure, table or section by its label (``fig:...``, ``tab:...``,
  ``sec:...``): "Figure 2" in Markdown, ``Figure~\\ref{fig:params}`` in LaTeX.

Characters: the Markdown keeps all of Unicode as it is (control characters aside). The LaTeX
is for pdflatex with nothing beyond Debian's texlive-latex-base: UTF-8 input and LaTeX's default
fonts typeset the letters of Latin-1 and most of Latin Extended-A (``Réseau``, ``Łódź``,
``Straße``: :data:`LATEX_TEXT`), and Greek letters go through math mode; a character they cannot
typeset (CJK, Cyrillic, an emoji, a control character) is written as its code point in brackets,
``[U+7814]``, so that it shows, and never silently becomes ``?``.

Blocks: :class:`Paragraph`, :class:`Table`, :class:`Figure`, :class:`CodeBlock` (kept on one
page with the sentence that leads into it) and :class:`Section` (an appendix when
``appendix=True``). Markdown numbers figures, tables and sections itself, in document order,
as LaTeX does.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# ----------------------------------------------------------------------------- inline text

@dataclass(frozen=True)
class Code:
    """Inline code: a command, a flag, a file name."""

    text: str


@dataclass(frozen=True)
class Alt:
    """Text written for each format (not escaped): ``Alt("β1", r"$\\beta_1$")``."""

    md: str
    tex: str


@dataclass(frozen=True)
class Strong:
    """Bold text."""

    content: Text


@dataclass(frozen=True)
class Ref:
    """A reference to the figure, table or section labelled ``label``."""

    label: str


Inline = str | Code | Alt | Strong | Ref
Text = Inline | tuple


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 epoch``, ``3 epochs``, ``0 trials``; ``plural`` where adding an s is wrong."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


# ----------------------------------------------------------------------------- blocks

@dataclass
class Paragraph:
    content: Text


@dataclass
class Table:
    """A table. ``align`` has one entry a column: ``l``, ``r``, or ``*``: text that wraps, in the
    width the other columns leave. A line break in a header cell stacks its lines in LaTeX (a
    space in Markdown). ``long``: may run over pages (LaTeX's longtable); ``small``: set smaller."""

    header: tuple
    rows: list
    align: tuple
    caption: Text = ""
    label: str = ""
    long: bool = False
    small: bool = False


@dataclass
class Figure:
    path: str
    caption: Text
    label: str
    width: float = 1.0    # fraction of the text width


@dataclass
class CodeBlock:
    """Lines of code, on one page with ``lead`` (the sentence that introduces them)."""

    lines: list
    lead: Text = ""
    language: str = ""


@dataclass
class Section:
    title: str
    blocks: list
    label: str = ""
    appendix: bool = False


@dataclass
class Document:
    title: str
    blocks: list                      # paragraphs before the first section, then sections
    author: str = ""
    date: str = ""

    def sections(self) -> list[Section]:
        return [b for b in self.blocks if isinstance(b, Section)]

    def number(self) -> dict[str, str]:
        """Label -> "Figure 2", "Table 1", "Section 3", "Appendix A", in document order."""
        numbers, n = {}, {"fig": 0, "tab": 0, "sec": 0, "app": 0}
        for block in self.blocks:
            if isinstance(block, Section):
                kind = "app" if block.appendix else "sec"
                n[kind] += 1
                if block.label:
                    numbers[block.label] = (f"Appendix {chr(64 + n[kind])}" if block.appendix
                                            else f"Section {n[kind]}")
            for b in block.blocks if isinstance(block, Section) else [block]:
                if isinstance(b, Figure) and b.label:
                    n["fig"] += 1
                    numbers[b.label] = f"Figure {n['fig']}"
                elif isinstance(b, Table) and b.label:
                    n["tab"] += 1
                    numbers[b.label] = f"Table {n['tab']}"
        return numbers


def _parts(text: Text) -> list:
    """The inline pieces of ``text``, nested tuples flattened."""
    if not isinstance(text, tuple):
        return [text]
    return [piece for part in text for piece in _parts(part)]


def render_inline(text: Text, *, text_fn, code, alt, strong, ref) -> str:
    """``text`` rendered piece by piece: a function for each kind of inline piece."""
    kinds = ((str, text_fn), (Code, lambda p: code(p.text)), (Alt, alt), (Strong, lambda p: strong(p.content)),
             (Ref, lambda p: ref(p.label)))
    return "".join(next(fn for kind, fn in kinds if isinstance(part, kind))(part) for part in _parts(text))


def plain(text: Text) -> str:
    """``text`` as plain Unicode (Markdown's labels, no markup): for alt texts and tests."""
    return render_inline(text, text_fn=str, code=str, alt=lambda a: a.md, strong=plain, ref=str)


# ----------------------------------------------------------------------------- Markdown

def md_text(text: str) -> str:
    """``text`` for Markdown: Unicode as it is, a line break or tab as a space, another control
    character as ``[U+XXXX]``."""
    return "".join(" " if ch in "\n\r\t" else f"[U+{ord(ch):04X}]" if _is_control(ch) else ch for ch in str(text))


def md_code(text: str) -> str:
    """Inline code that may itself hold backticks: fenced by one more than its longest run of them."""
    text = md_text(text)
    run = longest = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_escape(text: str) -> str:
    return md_text(text).replace("|", "\\|")


def to_markdown(doc: Document) -> str:
    numbers = doc.number()

    def inline(text: Text) -> str:
        return render_inline(text, text_fn=md_text, code=md_code, alt=lambda a: a.md,
                             strong=lambda t: f"**{inline(t)}**", ref=lambda label: numbers.get(label, "??"))

    def block(b) -> list[str]:
        if isinstance(b, Paragraph):
            return [inline(b.content), ""]
        if isinstance(b, Figure):
            name = numbers.get(b.label, "Figure")
            return [f"![{name}: {md_escape(plain(b.caption))}]({b.path})", "", f"*{name}: {inline(b.caption)}*", ""]
        if isinstance(b, CodeBlock):
            return ([inline(b.lead), ""] if b.lead else []) + [f"```{b.language}", *b.lines, "```", ""]
        if isinstance(b, Table):
            lines = [f"*{numbers[b.label]}: {inline(b.caption)}*", ""] if b.label else []
            rule = ["--:" if a == "r" else "---" for a in b.align]
            lines += ["| " + " | ".join(md_escape(inline(h)) for h in b.header) + " |", "|" + "|".join(rule) + "|"]
            lines += ["| " + " | ".join(md_escape(inline(v)) for v in row) + " |" for row in b.rows]
            return lines + [""]
        raise TypeError(f"not a block: {b!r}")

    lines = [f"# {md_text(doc.title)}", ""]
    if doc.author or doc.date:
        lines += [" · ".join(md_text(x) for x in (doc.author, doc.date) if x), ""]
    n_sec = n_app = 0
    for b in doc.blocks:
        if isinstance(b, Section):
            if b.appendix:
                n_app += 1
                lines += [f"## Appendix {chr(64 + n_app)}. {b.title}", ""]
            else:
                n_sec += 1
                lines += [f"## {n_sec}. {b.title}", ""]
            for inner in b.blocks:
                lines += block(inner)
        else:
            lines += block(b)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- LaTeX

LATEX_SPECIALS = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                  "^": r"\textasciicircum{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
                  "–": "--", "—": "---", "η": r"$\eta$", "β": r"$\beta$", "ε": r"$\epsilon$", "α": r"$\alpha$",
                  "−": "-", "×": r"$\times$", "’": "'", "·": r"$\cdot$", "÷": r"$\div$"}


#: The characters beyond ASCII that pdflatex typesets as they are, with UTF-8 input and LaTeX's
#: default fonts (OT1; no font package): those its ot1enc.dfu and omsenc.dfu define, less the
#: accents OT1 lacks (the ogonek of ą) and the letters it has not (ð, þ, đ, ŋ). Checked by
#: compiling them all (tests/test_report.py).
_TYPESET = ("00A0-00A1 00AD 00B8 00BF-00CF 00D1-00D6 00D8-00DD 00DF-00EF 00F1-00F6 00F8-00FD 00FF-0103 0106-010F "
            "0112-0117 011A-0125 0128-012D 0130-0137 0139-013E 0141-0148 014C-0165 0168-0171 0174-017E 01C4-01D4 "
            "01E2-01E3 01E6-01E9 01F0 01F4-01F5 0218-021B 0232-0233 0237 2010-2015 2018-2019 201C-201D 2026")
LATEX_TEXT = frozenset(chr(c) for part in _TYPESET.split()
                       for c in range(int(part[:4], 16), int(part[-4:], 16) + 1))
#: The 24 letters of the Greek alphabet (Unicode spells lambda LAMDA), and the capitals that look
#: like Latin ones (math mode has no command for those).
GREEK = ("ALPHA BETA GAMMA DELTA EPSILON ZETA ETA THETA IOTA KAPPA LAMBDA MU NU XI OMICRON PI RHO SIGMA TAU "
         "UPSILON PHI CHI PSI OMEGA").split()
GREEK_AS_LATIN = {"ALPHA": "A", "BETA": "B", "EPSILON": "E", "ZETA": "Z", "ETA": "H", "IOTA": "I", "KAPPA": "K",
                  "MU": "M", "NU": "N", "OMICRON": "O", "RHO": "P", "TAU": "T", "CHI": "X"}


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") or ch in "\u2028\u2029"


def _greek(ch: str) -> str | None:
    """A Greek letter (or the micro sign) as pdflatex's math mode writes it, ``$\\lambda$``; else None."""
    if ch == "\u00b5":
        return r"$\mu$"
    name = unicodedata.name(ch, "").replace("LAMDA", "LAMBDA")
    for prefix, capital in (("GREEK SMALL LETTER ", False), ("GREEK CAPITAL LETTER ", True)):
        letter = name[len(prefix):] if name.startswith(prefix) else None
        if letter == "FINAL SIGMA":
            return r"$\varsigma$"
        if letter not in GREEK:  # not Greek, or a letter with an accent (tonos, dialytika)
            continue
        if capital and letter in GREEK_AS_LATIN:
            return GREEK_AS_LATIN[letter]
        return "o" if letter == "OMICRON" else f"$\\{letter.capitalize() if capital else letter.lower()}$"
    return None


def latex_char(ch: str) -> str:
    """One character for pdflatex: escaped, typeset as it is, a Greek letter in math mode, or
    ``{[}U+7814{]}`` when it cannot be typeset (the braces keep a ``[`` from reading as an option)."""
    if ch in LATEX_SPECIALS:
        return LATEX_SPECIALS[ch]
    if ch in "\n\r\t":
        return " "
    if " " <= ch <= "~" or ch in LATEX_TEXT:
        return ch
    return _greek(ch) or f"{{[}}U+{ord(ch):04X}{{]}}"


def latex_escape(text: str) -> str:
    """``text`` safe inside a LaTeX paragraph or table cell: every character through :func:`latex_char`
    (composed first, so that an ``e`` and a combining accent are one ``é``)."""
    return "".join(latex_char(ch) for ch in unicodedata.normalize("NFC", str(text)))


MARGIN_CM = 2.2
TEXT_WIDTH = (21.0 - 2 * MARGIN_CM) / 2.54 * 72.27   # pt, A4
PREAMBLE = [
    r"\documentclass[11pt,a4paper]{article}", r"\usepackage[utf8]{inputenc}",  # LaTeX's default since 2018
    rf"\usepackage[margin={MARGIN_CM}cm]{{geometry}}", r"\usepackage{float}",
    r"\usepackage{graphicx}", r"\usepackage{longtable}", r"\usepackage{array}", r"\usepackage{booktabs}",
    r"\usepackage[font=small,labelfont=bf]{caption}",
    r"\usepackage[hidelinks]{hyperref}",
    r"\setlength{\LTcapwidth}{\linewidth}",
    r"\setlength{\parindent}{0pt}", r"\setlength{\parskip}{0.6\baselineskip}", r"\setlength{\emergencystretch}{3em}",
    r"\renewcommand{\topfraction}{0.9}", r"\renewcommand{\textfraction}{0.1}",
    r"\renewcommand{\floatpagefraction}{0.8}",
]


#: A table's text size in the 11pt document: its command, the width of a character (pt; Computer
#: Modern's digits: half an em at 10.95 pt, relatively wider at the smaller optical sizes) and the
#: space either side of a column (pt).
SIZES = {"normal": ("", 5.5, 6.0), "small": (r"\scriptsize", 4.25, 2.5), "tiny": (r"\tiny", 3.67, 2.0)}
MIN_WRAP = 50.0   # pt: a small table whose wrapping column would be narrower is set tiny


def _math_spaces(tex: str) -> list[int]:
    """Positions of the spaces of ``tex`` outside ``$...$``."""
    out, math = [], False
    for i, ch in enumerate(tex):
        if ch == "$" and tex[i - 1:i] != "\\":
            math = not math
        elif ch == " " and not math:
            out.append(i)
    return out


def _header_lines(plain_text: str, widest: int) -> tuple[list[str], int | None]:
    """A header wider than its column's widest cell, at a space: its lines, and which space (rank)."""
    spaces = [i for i, ch in enumerate(plain_text) if ch == " "]
    if len(plain_text) <= widest or not spaces:
        return [plain_text], None
    k = min(range(len(spaces)), key=lambda k: max(spaces[k], len(plain_text) - spaces[k] - 1))
    return [plain_text[:spaces[k]], plain_text[spaces[k] + 1:]], k


def _latex_table_layout(b: Table) -> tuple[str, float, list, float]:
    """(size command, column space, for each header the space to stack it at or None, points the
    columns other than ``*`` take): the size is the table's own, or tiny where a small table
    would leave its ``*`` column narrower than MIN_WRAP."""
    for size in (("small", "tiny") if b.small else ("normal",)):
        command, char, sep = SIZES[size]
        used, stacks = 0.0, []
        for i, a in enumerate(b.align):
            widest = max((len(plain(row[i])) for row in b.rows), default=0)
            lines, k = _header_lines(plain(b.header[i]), widest) if b.small else ([plain(b.header[i])], None)
            stacks.append(k)
            used += 2 * sep + (0 if a == "*" else char * max(widest, *(len(x) for x in lines)))
        if "*" not in b.align or TEXT_WIDTH - used >= MIN_WRAP:
            break
    return command, sep, stacks, used


def to_latex(doc: Document) -> str:
    numbers = doc.number()

    def code(text: str) -> str:
        # a line may break after / _ - . : paths and URLs do not run into the margin
        return r"\texttt{" + "".join(latex_escape(ch) + (r"\allowbreak{}" if ch in "/_-." else "") for ch in text) + "}"

    def inline(text: Text) -> str:
        return render_inline(text, text_fn=latex_escape, code=code, alt=lambda a: a.tex,
                             strong=lambda t: r"\textbf{" + inline(t) + "}",
                             ref=lambda label: numbers.get(label, "Figure ?").split()[0] + rf"~\ref{{{label}}}")

    def head_cell(text: Text, align: str, stack: int | None) -> str:
        """A header cell; stacked on two lines where it is wider than its column's cells."""
        tex = inline(text)
        spaces = _math_spaces(tex)
        if stack is None or stack >= len(spaces):
            return tex
        cut = spaces[stack]
        return (rf"\begin{{tabular}}[b]{{@{{}}{align}@{{}}}}{tex[:cut]} \\ {tex[cut + 1:]}\end{{tabular}}")

    def table(b: Table) -> list[str]:
        command, sep, stacks, used = _latex_table_layout(b)
        wrap = rf">{{\raggedright\arraybackslash}}p{{\dimexpr\linewidth-{used:.0f}pt\relax}}"
        spec = " ".join(wrap if a == "*" else a for a in b.align)
        head = " & ".join(head_cell(h, "r" if a == "r" else "l", k)
                          for h, a, k in zip(b.header, b.align, stacks)) + r" \\ \midrule"
        body = [" & ".join(inline(v) for v in row) + r" \\" for row in b.rows]
        size = [command + rf"\setlength{{\tabcolsep}}{{{sep:g}pt}}"] if command else []
        caption = rf"\caption{{{inline(b.caption)}}}\label{{{b.label}}}" if b.label else ""
        if b.long:
            return (["{", *size, rf"\begin{{longtable}}{{{spec}}}"]
                    + ([caption + r" \\"] if caption else [])
                    + [r"\toprule", head, r"\endfirsthead", r"\toprule", head, r"\endhead",
                       r"\bottomrule", r"\endlastfoot", *body, r"\end{longtable}", "}", ""])
        return ([r"\begin{table}[H]", r"\centering", *size] + ([caption] if caption else [])
                + [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", head, *body, r"\bottomrule", r"\end{tabular}",
                   r"\end{table}", ""])

    def block(b) -> list[str]:
        if isinstance(b, Paragraph):
            return [inline(b.content), ""]
        if isinstance(b, Figure):
            # [H]: where the text that discusses it stands (a float would drift pages away)
            return [r"\begin{figure}[H]", r"\centering",
                    rf"\includegraphics[width={b.width:g}\linewidth]{{{b.path}}}",
                    rf"\caption{{{inline(b.caption)}}}\label{{{b.label}}}", r"\end{figure}", ""]
        if isinstance(b, CodeBlock):
            # a minipage cannot break across pages: the lead-in and the code stay together
            return [r"\par\noindent\begin{minipage}{\linewidth}", *([inline(b.lead), ""] if b.lead else []),
                    r"\small", r"\begin{verbatim}", *(latex_verbatim(line) for line in b.lines), r"\end{verbatim}",
                    r"\end{minipage}", ""]
        if isinstance(b, Table):
            return table(b)
        raise TypeError(f"not a block: {b!r}")

    lines = [*PREAMBLE, rf"\title{{{latex_escape(doc.title)}}}", rf"\author{{{latex_escape(doc.author)}}}",
             rf"\date{{{latex_escape(doc.date)}}}", r"\begin{document}", r"\maketitle", ""]
    in_appendix = False
    for b in doc.blocks:
        if isinstance(b, Section):
            if b.appendix and not in_appendix:
                lines += [r"\clearpage", r"\appendix", ""]
                in_appendix = True
            lines += [rf"\section{{{latex_escape(b.title)}}}" + (rf"\label{{{b.label}}}" if b.label else ""), ""]
            for inner in b.blocks:
                lines += block(inner)
        else:
            lines += block(b)
    return "\n".join(lines + [r"\end{document}", ""])


def latex_verbatim(line: str) -> str:
    """A verbatim line: what pdflatex cannot typeset written ``[U+XXXX]`` (as :func:`latex_char` does)."""
    return "".join(ch if " " <= ch <= "~" or ch in LATEX_TEXT else f"[U+{ord(ch):04X}]"
                   for ch in unicodedata.normalize("NFC", str(line)))
