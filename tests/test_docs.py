"""The README and docs/ as a reader follows them: every relative link lands (on a heading, when it
names one), and every module and repository path the commands name exists.

The quick start itself is run, command by command, by tests/integration/test_quickstart.py.
"""

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "client" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250  # what a newcomer reads first: the rest belongs in docs/
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
# Top-level folders and files of the repository a command may name; var/ is made by the service as it runs.
REPOSITORY_PATH = re.compile(r"^(\./)?(\.ci|docs|client|cropper|devtools|bench|tests|monitoring|nginx)(/|\[|$)")


def prose(text):
    """The text outside code blocks, where links and headings are."""
    return FENCE.sub("", text)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page):
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", prose(page.read_text()), re.M):
        base = slug(heading)
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found


def relative_links(page):
    for target in LINK.findall(prose(page.read_text())):
        if not re.match(r"^[a-z]+:", target):  # http:, https:, mailto: lead elsewhere
            yield target


INLINE_COMMAND = re.compile(r"`((?:[A-Z_]+=\S+ )*(?:\S*/)?(?:python3?|pip3?|bash) [^`]+)`")


def commands(page, languages=("sh", "")):
    """Each command line of the page's shell blocks (continuations joined) and of its inline code that runs
    python, pip or bash, split at && ; and |."""
    text = page.read_text()
    lines = [line for language, block in FENCE.findall(text) if language in languages
             for line in block.replace("\\\n", " ").splitlines()]
    for line in lines + INLINE_COMMAND.findall(prose(text)):
        line = line.split(" #", 1)[0].strip()
        for command in re.split(r"&&|;|\|", line):
            if command.strip() and not command.strip().startswith(("#", "{", "[", "<", '"')):
                yield command.strip()


def words(command):
    try:
        return shlex.split(command)
    except ValueError:  # a quoted JSON body cut at its | or ; is not a command of its own
        return []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
        if anchor:
            assert linked.suffix == ".md" and anchor in anchors(linked), \
                f"{page.relative_to(ROOT)} links to {target}: {linked.name} has no heading with that anchor"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_code_block_closes_on_a_line_of_its_own(page):
    """A fence after text (`}```) closes nothing: the block runs on, headings and all, to the next fence."""
    for number, line in enumerate(page.read_text().splitlines(), 1):
        assert not re.search(r"\S```\s*$", line), f"{page.relative_to(ROOT)}:{number}: {line}"


def test_every_docs_page_is_linked_from_the_readme_or_another_page():
    linked = {(page.parent / target.partition("#")[0]).resolve()
              for page in PAGES for target in relative_links(page) if target.partition("#")[0]}
    for page in (ROOT / "docs").glob("*.md"):
        assert page.resolve() in linked, f"nothing links to {page.relative_to(ROOT)}: no reader would find it"


def test_the_readme_fits_on_a_screen_or_two():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move the details to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_module_and_path_a_command_names_exists(page):
    named = 0
    for command in commands(page):
        parts = words(command)
        for i, word in enumerate(parts):
            if word == "-m" and i > 0 and Path(parts[i - 1]).name.startswith("python") and i + 1 < len(parts):
                module = parts[i + 1]
                if module in ("venv", "pip", "pytest"):
                    continue  # the standard library's and the test tools', not ours
                assert importlib.util.find_spec(module) is not None, f"{page.name}: `{command}` runs no module {module}"
                named += 1
            elif REPOSITORY_PATH.match(word):
                path = ROOT / word.split("[", 1)[0]
                assert path.exists(), f"{page.name}: `{command}` names {word}, which does not exist"
                named += 1
    assert named or page.name != "README.md"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_commands_use_the_projects_python_not_a_bare_one(page):
    """Debian has no `python`, and another Python lacks the service's packages: `.venv/bin/python`."""
    for command in commands(page):
        parts = [word for word in words(command) if not re.match(r"^[A-Z_]+=", word)]  # VAR=value prefixes
        assert not parts or parts[0] not in ("python", "pip", "pip3"), f"{page.name}: `{command}`"


def test_the_checks_find_what_they_look_for(tmp_path):
    """The checks above on a page that breaks each rule once: each is found."""
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n[ok](#a-page) [gone](nowhere.md) [no anchor](#missing)\n\n```sh\n"
                    "python -m cropper serve\n.venv/bin/python -m cropper.nothing\nbash .ci/nothing\n```\n\n"
                    "As `CACHE_DIR=x python -m cropper cache stats` says; `cropper serve` is no python command.\n")
    assert list(relative_links(page)) == ["#a-page", "nowhere.md", "#missing"]
    assert anchors(page) == {"a-page"}
    assert [words(c)[0] for c in commands(page)] == ["python", ".venv/bin/python", "bash", "CACHE_DIR=x"]
    assert importlib.util.find_spec("cropper.nothing") is None and not (ROOT / ".ci/nothing").exists()
    assert slug("`POST /cropper/` (also `/cropper`)") == "post-cropper-also-cropper"
    assert slug("The cache folder (`CACHE_DIR`)") == "the-cache-folder-cache_dir"
    assert sys.executable  # the modules are looked up in this interpreter, the project's
