"""The documentation has no dangling references: every relative link in README.md, docs/*.md and the notebook
resolves to a file in the repository, every docs/ path the code points to exists, no file points outside the
repository, and every `python ...` command the docs quote names a real script, subcommand and flag.

    python -m pytest -q tests/test_docs.py
"""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", "runs", "out", "__pycache__", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints"}
# spelled in pieces so that this file does not match itself
OUTSIDE = ("DESIGN" + ".md", "../" + "shared", "/work/" + "shared", "paper" + "-notes")


def repo_files() -> list[Path]:
    """Tracked files plus new ones git does not ignore (a clone's files, before and after a commit)."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]
    except (OSError, subprocess.CalledProcessError):   # no git: walk the tree, skipping outputs and environments
        return [Path(d) / f for d, dirs, files in os.walk(ROOT)
                for _ in [dirs.__setitem__(slice(None), [x for x in dirs if x not in SKIP_DIRS
                                                       and not x.startswith(".venv")])] for f in files]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None   # a binary file (PNG, checkpoint): nothing to point anywhere


def documents() -> dict[Path, str]:
    """README.md, docs/*.md and the notebook's markdown cells (never its outputs)."""
    docs = {ROOT / "README.md": (ROOT / "README.md").read_text()}
    docs.update({p: p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))})
    notebook = json.loads((ROOT / "tutorial.ipynb").read_text())
    docs[ROOT / "tutorial.ipynb"] = "\n".join("".join(c["source"]) for c in notebook["cells"])
    return docs


def test_docs_exist_and_every_page_is_linked_from_the_readme_or_the_docs_index():
    assert (ROOT / "docs" / "README.md").is_file() and len(list((ROOT / "docs").glob("*.md"))) >= 3
    readme, index = (ROOT / "README.md").read_text(), (ROOT / "docs" / "README.md").read_text()
    assert "(docs/README.md)" in readme
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"(docs/{page.name})" in readme or f"({page.name})" in index, f"nothing links docs/{page.name}"


def test_every_relative_link_resolves():
    dangling = []
    for path, text in documents().items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):   # [text](target) and ![alt](target)
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue   # a web address or an anchor on the same page
            if not (path.parent / target.split("#")[0]).exists():
                dangling.append(f"{path.relative_to(ROOT)}: {target}")
    assert not dangling, dangling


def test_every_docs_path_in_the_repository_exists():
    missing = set()
    for path in repo_files():
        text = text_of(path)
        for target in re.findall(r"(?<![\w/.])docs/[\w./-]*\w", text or ""):
            if not (ROOT / target).exists():
                missing.add(f"{path.relative_to(ROOT)}: {target}")
    assert not missing, sorted(missing)


def test_nothing_points_outside_the_repository():
    found = [f"{p.relative_to(ROOT)}: {word}" for p in repo_files() for word in OUTSIDE if word in (text_of(p) or "")]
    assert not found, found


def quoted_commands() -> list[tuple[str, str]]:
    """(document, command) for every `python X ...` line in a code block or inline code span of the docs."""
    commands = []
    for path, text in documents().items():
        spans = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S) + re.findall(r"`([^`\n]+)`", text)
        for span in spans:
            for line in span.replace("\\\n", " ").splitlines():
                for match in re.finditer(r"\bpython (-m \S+|\S+\.py)([^#|;&]*)", line):
                    commands.append((str(path.relative_to(ROOT)), match.group(0).strip()))
    return commands


def script_sources(words: list[str]) -> list[Path] | None:
    """The source files whose argparse a command's flags must come from; None for commands we do not check."""
    if words[1] == "-m":
        module = words[2]
        if module == "pytest" or not module.startswith("mebt."):
            return None
        return [ROOT / (module.replace(".", "/") + ".py")]
    script = ROOT / words[1]
    if words[1] == "bench.py" and len(words) > 2 and not words[2].startswith("-"):
        return [script, ROOT / "benchmarks" / f"{words[2]}.py"]   # the subcommand's own module
    return [script]


def test_quoted_commands_name_real_scripts_and_flags():
    commands = quoted_commands()
    assert len(commands) > 10   # the README and docs quote many
    wrong = []
    for where, command in commands:
        words = command.split()
        sources = script_sources(words)
        if sources is None:
            continue
        if not all(s.is_file() for s in sources):
            wrong.append(f"{where}: `{command}` names a file that does not exist")
            continue
        source = "".join(s.read_text() for s in sources)
        for flag in re.findall(r"(?<!\S)(--[a-z][a-z0-9-]*)", command):
            if f'"{flag}"' not in source:
                wrong.append(f"{where}: `{command}`: no {flag} in {', '.join(str(s.relative_to(ROOT)) for s in sources)}")
    assert not wrong, wrong


@pytest.mark.parametrize("command, ok", [("python bench.py ablations --quick", True),
                                         ("python bench.py ablations --no-such-flag", False),
                                         ("python bench.py nothing", False)])
def test_the_command_check_catches_wrong_commands(command, ok):
    words = command.split()
    sources = script_sources(words)
    exists = all(s.is_file() for s in sources)
    flags_ok = exists and all(f'"{f}"' in "".join(s.read_text() for s in sources) for f in words if f.startswith("--"))
    assert flags_ok == ok
