"""Put the benchmark result tables into the manual: ``python docs/build.py`` from the repository root.

In ``README.md`` and ``docs/**/*.md``, a block

    <!-- include: benchmarks/results/<file>.md -->
    (whatever is here is replaced)
    <!-- end include -->

is replaced by the content of the file (a path relative to the repository root). A selector after the path
includes only a part of it:

    <file>.md#<heading>            the part under the first heading whose text starts with <heading>, up to the
                                   next heading of the same or a higher level (the heading line itself left out)
    <file>.md@<text>               the paragraph whose first line starts with <text>, and the table right after it
    <file>.md#<heading>@<text>     the same, looked for only under that heading
    <file>.md@<text>|<value>       that paragraph and table, keeping only the table rows whose first cell is
                                   <value> (the header row and its separator are kept)

Headings of the included text are shifted so that its highest one sits one level below the page heading that
the block stands under. Markers count only as whole lines outside fenced code blocks. Running the script twice
changes nothing. A file that does not exist yet gives an empty block and a warning.

    python docs/build.py            rewrite every stale file
    python docs/build.py --check    list the stale files and write nothing; exit status 1 if there are any
"""
import argparse
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START = re.compile(r"^<!-- include: (?P<spec>.+?) -->$")
END = "<!-- end include -->"
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


class BuildError(Exception):
    """An include that cannot be expanded: no end marker, a selector that matches nothing."""


def pages(root=ROOT):
    """The files the script looks at: README.md and every docs/**/*.md, relative to root, sorted."""
    found = ["README.md"] if os.path.exists(os.path.join(root, "README.md")) else []
    found += sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "docs", "**", "*.md"), recursive=True))
    return found


def parse_spec(spec):
    """``path#heading@text|row`` -> (path, heading or None, text or None, row or None)."""
    m = re.match(r"^(?P<path>[^#@|]+?)(?:#(?P<heading>[^@|]+))?(?:@(?P<text>[^|]+))?(?:\|(?P<row>.+))?$", spec.strip())
    if not m or (m.group("row") is not None and m.group("text") is None):
        raise BuildError(f"include {spec!r}: expected <path>[#<heading>][@<text>[|<value>]]")
    row = m.group("row").strip() if m.group("row") is not None else None
    return m.group("path").strip(), m.group("heading"), m.group("text"), row


def _outside_fences(lines):
    """For each line: True when it is outside a fenced code block (fence lines count as inside)."""
    flags, fence = [], None
    for line in lines:
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            flags.append(False)
        elif fence is not None:
            flags.append(False)
            if line.strip().startswith(fence):
                fence = None
        else:
            flags.append(True)
    return flags


def _section(lines, heading, where):
    outside = _outside_fences(lines)
    for i, line in enumerate(lines):
        m = HEADING.match(line) if outside[i] else None
        if m and m.group(2).startswith(heading):
            level = len(m.group(1))
            end = len(lines)
            for j in range(i + 1, len(lines)):
                n = HEADING.match(lines[j]) if outside[j] else None
                if n and len(n.group(1)) <= level:
                    end = j
                    break
            return lines[i + 1:end]
    raise BuildError(f"{where}: no heading starts with {heading!r}")


def _is_table(line):
    return line.lstrip().startswith("|")


def _block(lines, text, where):
    for i, line in enumerate(lines):
        if line.strip() and line.lstrip().startswith(text):
            j = i
            while j < len(lines) and lines[j].strip() and not _is_table(lines[j]):
                j += 1  # the paragraph
            k = j
            while k < len(lines) and not lines[k].strip():
                k += 1  # blank lines after it
            if k < len(lines) and _is_table(lines[k]):
                j = k
                while j < len(lines) and _is_table(lines[j]):
                    j += 1  # the table
            return lines[i:j]
    raise BuildError(f"{where}: no line starts with {text!r}")


def _rows(lines, value, where):
    """``lines`` with only the table rows whose first cell is ``value`` (the header and separator kept)."""
    out, seen, row = [], 0, 0
    for line in lines:
        if not _is_table(line):
            out.append(line)
            continue
        row += 1
        first = line.strip().strip("|").split("|")[0].strip()
        if row <= 2 or first == value:
            out.append(line)
            seen += row > 2
    if not seen:
        raise BuildError(f"{where}: no table row starts with the cell {value!r}")
    return out


def _shift_headings(lines, top):
    """Shift the headings of ``lines`` so that the highest one is at level ``top`` (at most 6)."""
    outside = _outside_fences(lines)
    levels = [len(HEADING.match(l).group(1)) for l, o in zip(lines, outside) if o and HEADING.match(l)]
    if not levels:
        return lines
    shift = top - min(levels)
    out = []
    for line, o in zip(lines, outside):
        m = HEADING.match(line) if o else None
        out.append("#" * max(1, min(6, len(m.group(1)) + shift)) + " " + m.group(2) if m else line)
    return out


def included(spec, root=ROOT, where="include", top=1):
    """The text an include block holds: the selected part of the file, without blank lines at either end, its
    headings shifted to start at level ``top``. None when the file does not exist."""
    path, heading, text, row = parse_spec(spec)
    full = os.path.normpath(os.path.join(root, path))
    if not full.startswith(os.path.abspath(root) + os.sep):
        raise BuildError(f"{where}: {path!r} is outside the repository")
    if not os.path.isfile(full):
        return None
    with open(full, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if heading is not None:
        lines = _section(lines, heading, f"{where}: {path}")
    if text is not None:
        lines = _block(lines, text, f"{where}: {path}" + (f"#{heading}" if heading else ""))
    if row is not None:
        lines = _rows(lines, row, f"{where}: {path}@{text}")
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    if END in lines:
        raise BuildError(f"{where}: {path} contains the end marker {END!r}")
    return "\n".join(_shift_headings(lines, top))


def expand(text, root=ROOT, name="<page>", warnings=None):
    """The page ``text`` with every include block filled in. Missing files are appended to ``warnings``."""
    lines = text.split("\n")
    out, i, fence, level = [], 0, None, 0
    while i < len(lines):
        line = lines[i]
        if fence is not None:
            out.append(line)
            if line.strip().startswith(fence):
                fence = None
            i += 1
            continue
        m = FENCE.match(line)
        if m:
            fence = m.group(1)
            out.append(line)
            i += 1
            continue
        h = HEADING.match(line)
        if h:
            level = len(h.group(1))
        s = START.match(line.strip())
        if not s:
            out.append(line)
            i += 1
            continue
        where = f"{name}:{i + 1}"
        try:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == END)
        except StopIteration:
            raise BuildError(f"{where}: {line.strip()} has no {END!r} after it") from None
        body = included(s.group("spec"), root, where, top=min(6, level + 1))
        if body is None:
            if warnings is not None:
                warnings.append(f"{where}: {parse_spec(s.group('spec'))[0]} does not exist: block left empty")
            body = ""
        out.append(line.strip())
        out.extend(["", body, ""] if body else [""])
        out.append(END)
        i = end + 1
    return "\n".join(out)


def stale(root=ROOT, warnings=None):
    """{page: expanded text} of every page whose include blocks are not up to date."""
    result = {}
    for page in pages(root):
        with open(os.path.join(root, page), encoding="utf-8") as f:
            text = f.read()
        new = expand(text, root, page, warnings)
        if new != text:
            result[page] = new
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="list stale files, write nothing; exit 1 if any")
    parser.add_argument("--root", default=ROOT, help="repository root (default: the folder above docs/)")
    args = parser.parse_args(argv)
    warnings = []
    try:
        todo = stale(args.root, warnings)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.check:
        for page in todo:
            print(f"stale: {page}")
        return 1 if todo else 0
    for page, text in todo.items():
        with open(os.path.join(args.root, page), "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
