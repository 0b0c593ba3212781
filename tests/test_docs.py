"""The manual (README.md and docs/): links resolve, commands parse, included result tables are current, one page
per registered method. Fast: no training, no Ray."""
import contextlib
import importlib.util
import io
import os
import re
import shlex
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# Included results that their script has not written yet: the include block stays empty until it has.
NOT_YET_WRITTEN = set()


def _build():
    spec = importlib.util.spec_from_file_location("docs_build", os.path.join(ROOT, "docs", "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _build()
PAGES = BUILD.pages(ROOT)


def _read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def _split(text):
    """(prose lines with fenced code blanked out, [(first line number, code lines) per fenced block])."""
    prose, blocks, fence, block = [], [], None, None
    for number, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence, block = m.group(1), (number + 1, [])
            prose.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                blocks.append(block)
                fence = None
            else:
                block[1].append(line)
            prose.append("")
        else:
            prose.append(line)
    return prose, blocks


def slug(text):
    """GitHub's anchor for a heading: its rendered text, lower case, without punctuation, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page):
    prose, _ = _split(_read(page))
    seen, out = {}, set()
    for line in prose:
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page):
    """(line, target) of every Markdown link and image outside code."""
    prose, _ = _split(_read(page))
    text = "\n".join(prose)
    text = INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)  # keep line numbers
    return [(text.count("\n", 0, m.start()) + 1, m.group(2)) for m in LINK.finditer(text)]


def test_every_relative_link_resolves():
    bad, count = [], 0
    for page in PAGES:
        for line, target in links(page):
            if SCHEME.match(target):
                continue
            count += 1
            path, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), urllib.parse.unquote(path))) if path \
                else os.path.join(ROOT, page)
            where = f"{page}:{line}: ({target})"
            if not full.startswith(ROOT + os.sep) and full != ROOT:
                bad.append(f"{where} points outside the repository")
            elif not os.path.exists(full):
                bad.append(f"{where} no such file: {os.path.relpath(full, ROOT)}")
            elif anchor and full.endswith(".md"):
                found = anchors(os.path.relpath(full, ROOT))
                if anchor not in found:
                    bad.append(f"{where} no heading with anchor #{anchor} in {os.path.relpath(full, ROOT)}")
            elif anchor and not re.fullmatch(r"L\d+(-L\d+)?", anchor):
                bad.append(f"{where} an anchor into a file that is not Markdown")
    assert count > 50, f"only {count} relative links found: is the link pattern broken?"
    assert not bad, "broken links:\n" + "\n".join(bad)


def _commands_of(words):
    """The argument lists of the run_recbole_transfer.py / recbole-transfer invocations in a shell word list."""
    found, segment = [], []
    for word in words + ["&&"]:
        if word not in ("&&", "||", ";", "|"):
            segment.append(word)
            continue
        while segment and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", segment[0]):
            segment = segment[1:]  # VAR=value before the command
        if len(segment) >= 2 and re.fullmatch(r"python[0-9.]*", segment[0]) and \
                segment[1].endswith("run_recbole_transfer.py"):
            found.append(segment[2:])
        elif segment and segment[0] == "recbole-transfer":
            found.append(segment[1:])
        segment = []
    return found


def commands():
    """(page:line, command text, argv) of every command in a code block or an inline code span."""
    out = []
    for page in PAGES:
        prose, blocks = _split(_read(page))
        for first, lines in blocks:
            i = 0
            while i < len(lines):
                start, text = first + i, lines[i]
                while text.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    text = text.rstrip()[:-1] + " " + lines[i].strip()
                i += 1
                if "run_recbole_transfer.py" in text or "recbole-transfer" in text:
                    out.append((f"{page}:{start}", text.strip()))
        joined = "\n".join(prose)
        for m in INLINE_CODE.finditer(joined):
            span = " ".join(m.group(2).split())
            if re.match(r"^([A-Za-z_][A-Za-z0-9_]*=\S+ )*(python[0-9.]* run_recbole_transfer\.py|recbole-transfer)\b", span):
                out.append((f"{page}:{joined.count(chr(10), 0, m.start()) + 1}", span))
    result = []
    for where, text in out:
        try:
            words = shlex.split(text, comments=True)
        except ValueError as exc:
            result.append((where, text, exc))
            continue
        result.extend((where, text, argv) for argv in _commands_of(words))
    return result


def test_every_documented_command_parses():
    from recbole_transfer.cli import parse_command

    found = commands()
    assert len(found) > 30, f"only {len(found)} commands found: is the extraction broken?"
    bad = []
    for where, text, argv in found:
        if isinstance(argv, Exception):
            bad.append(f"{where}: {text}\n    cannot be split: {argv}")
            continue
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                parse_command(argv)
        except SystemExit as exc:
            last = (stderr.getvalue().strip().splitlines() or [""])[-1]
            bad.append(f"{where}: {text}\n    argparse: exit {exc.code}: {last}")
        except Exception as exc:  # TransferError: an argument that is not --key=value, or a value RecBole refuses
            bad.append(f"{where}: {text}\n    {type(exc).__name__}: {exc}")
    assert not bad, "commands that do not parse:\n" + "\n".join(bad)


def test_included_result_tables_are_current():
    warnings = []
    stale = BUILD.stale(ROOT, warnings)
    assert not stale, "stale include blocks (run `python docs/build.py`): " + ", ".join(stale)
    missing = [w for w in warnings if not any(name in w for name in NOT_YET_WRITTEN)]
    assert not missing, "includes of files that do not exist:\n" + "\n".join(missing)


def test_readme_is_short():
    n = _read("README.md").count("\n")
    assert n <= 250, f"README.md has {n} lines (at most 250: the rest belongs in docs/)"


def test_one_page_per_registered_method():
    from recbole_transfer import registry

    names = [m.name for m in registry.methods()]
    assert names, "no method registered"
    folder = os.path.join(ROOT, "docs", "methods")
    pages = {f[:-3] for f in os.listdir(folder) if f.endswith(".md")}
    missing = [n for n in names if n not in pages]
    assert not missing, f"registered methods without a page docs/methods/<name>.md: {missing}"
    # A page that is not a method's (CATN's) must be a sub-page: linked from a method's page.
    linked = {os.path.normpath(os.path.join(folder, target.partition("#")[0]))
              for n in names for _, target in links(f"docs/methods/{n}.md")}
    orphans = sorted(p for p in pages - set(names) if os.path.join(folder, p + ".md") not in linked)
    assert not orphans, f"docs/methods pages that are no registered method and no method's page links: {orphans}"
    readme = {os.path.normpath(os.path.join(ROOT, t.partition("#")[0])) for _, t in links("README.md")}
    unlisted = [n for n in names if os.path.join(folder, n + ".md") not in readme]
    assert not unlisted, f"methods whose page the README does not link: {unlisted}"


def test_manual_index_links_every_page():
    index = {os.path.normpath(os.path.join(ROOT, "docs", t.partition("#")[0])) for _, t in links("docs/README.md")}
    pages = [p for p in PAGES if p.startswith("docs" + os.sep) and p != os.path.join("docs", "README.md")]
    unlisted = [p for p in pages if os.path.join(ROOT, p) not in index]
    assert not unlisted, f"docs pages that docs/README.md does not link: {unlisted}"


def test_build_expands_selects_and_is_idempotent(tmp_path):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "benchmarks" / "results" / "r.md").write_text(
        "# Title\n\nCaption A\n\n| a | n |\n|---|---|\n| x | 1 |\n| y | 2 |\n| x | 3 |\n\nafter\n\n## Part two\n\nCaption B\n| b |\n|---|\n| 2 |\n")
    page = ("## Results\n\n<!-- include: benchmarks/results/r.md -->\nold\n<!-- end include -->\n\n"
            "<!-- include: benchmarks/results/r.md#Part@Caption B -->\n<!-- end include -->\n\n"
            "<!-- include: benchmarks/results/r.md@Caption A|x -->\n<!-- end include -->\n\n"
            "```\n<!-- include: benchmarks/results/nothing.md -->\n```\n")
    (tmp_path / "docs" / "p.md").write_text(page)
    assert list(BUILD.stale(str(tmp_path))) == [os.path.join("docs", "p.md")]
    assert BUILD.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "docs" / "p.md").read_text()
    assert "### Title" in text and "#### Part two" in text and "old" not in text  # shifted under '## Results'
    second = text.split("<!-- include: benchmarks/results/r.md#Part@Caption B -->")[1].split("<!-- end include -->")[0]
    assert second.strip() == "Caption B\n| b |\n|---|\n| 2 |"
    rows = text.split("<!-- include: benchmarks/results/r.md@Caption A|x -->")[1].split("<!-- end include -->")[0]
    assert rows.strip() == "Caption A\n\n| a | n |\n|---|---|\n| x | 1 |\n| x | 3 |"  # the y row left out
    assert "<!-- include: benchmarks/results/nothing.md -->\n```" in text  # fenced code is left alone
    assert BUILD.stale(str(tmp_path)) == {}
    assert BUILD.main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / "benchmarks" / "results" / "r.md").write_text("# Title\n\nCaption A changed\n\n| a | n |\n|---|---|\n| x | 9 |\n\n## Part two\n\nCaption B\n")
    assert BUILD.main(["--root", str(tmp_path), "--check"]) == 1
    (tmp_path / "docs" / "p.md").write_text("<!-- include: benchmarks/results/r.md#No such part -->\n<!-- end include -->\n")
    with pytest.raises(BUILD.BuildError, match="No such part"):
        BUILD.stale(str(tmp_path))
    (tmp_path / "docs" / "p.md").write_text("<!-- include: benchmarks/results/r.md@Caption B|z -->\n<!-- end include -->\n")
    with pytest.raises(BUILD.BuildError, match="no table row starts with the cell 'z'"):
        BUILD.stale(str(tmp_path))
