"""The README is a short front door whose links all lead somewhere: every relative link and
image of README.md and docs/*.md names a file that exists (and a heading that exists, when it
has a #fragment), every docs page is reachable from the README, and the README's set-up and
test commands are the ones CI runs (.ci/run)."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 250

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")


def prose_lines(text: str) -> list[str]:
  """The lines outside fenced code blocks, where markdown links and headings live."""
  lines, in_code = [], False
  for line in text.splitlines():
    if FENCE.match(line):
      in_code = not in_code
    elif not in_code:
      lines.append(line)
  return lines


def links(text: str) -> list[str]:
  """Link and image targets of a markdown text, leaving out code."""
  return [target for line in prose_lines(text)
          for target in LINK.findall(INLINE_CODE.sub("", line))]


def slug(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces made hyphens."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
  text = re.sub(r"[^\w\- ]", "", text.replace("`", "").replace("*", "").strip().lower())
  return text.replace(" ", "-")


def anchors(page: pathlib.Path) -> set[str]:
  """Every heading anchor of a markdown page, repeats numbered as GitHub numbers them."""
  seen, result = {}, set()
  for line in prose_lines(page.read_text()):
    match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
    if match:
      base = slug(match.group(1))
      count = seen.get(base, 0)
      seen[base] = count + 1
      result.add(base if count == 0 else f"{base}-{count}")
  return result


def is_relative(target: str) -> bool:
  return not re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)


def broken_links(page: pathlib.Path) -> list[str]:
  """The relative links of a page whose file, or whose #heading in that file, is missing."""
  broken = []
  for target in filter(is_relative, links(page.read_text())):
    path, _, fragment = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    if not destination.is_file():
      broken.append(f"{target} (no file {destination})")
    elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
      broken.append(f"{target} (no heading #{fragment} in {destination.name})")
  return broken


def test_slug_matches_github_anchors():
  assert slug("Scaling out: GPUs, TPUs, several hosts") == "scaling-out-gpus-tpus-several-hosts"
  assert slug("Results (measured here, 2-core CPU)") == "results-measured-here-2-core-cpu"
  assert slug("The `budget` recipe") == "the-budget-recipe"


def test_broken_links_are_found(tmp_path):
  (tmp_path / "other.md").write_text("# Other page\n\n```\n# not a heading\n```\n")
  page = tmp_path / "page.md"
  page.write_text("# Top\n[a](other.md#other-page) [b](other.md#not-a-heading) "
                  "![c](missing.png) [d](#top) [e](#nowhere) [f](https://x.org/y) "
                  "`[g](code.md)`\n")
  assert broken_links(page) == [
      "other.md#not-a-heading (no heading #not-a-heading in other.md)",
      f"missing.png (no file {tmp_path / 'missing.png'})",
      "#nowhere (no heading #nowhere in page.md)"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
  assert links(page.read_text()), f"{page.name} links nowhere"
  assert broken_links(page) == []


def test_readme_is_short():
  lines = len(README.read_text().splitlines())
  assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move details into docs/"


def test_every_docs_page_is_linked_from_the_readme():
  linked = {(ROOT / target.partition("#")[0]).resolve()
            for target in filter(is_relative, links(README.read_text()))}
  assert [page.name for page in PAGES[1:] if page.resolve() not in linked] == []


def ci_commands() -> list[str]:
  """The commands .ci/run runs, leaving out the shell's options and its change of folder."""
  lines = (line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines())
  return [line for line in lines
          if line and not line.startswith(("#", "set ", "cd "))]


def readme_shell_commands() -> list[str]:
  """The commands of the README's bash blocks, without their trailing comments."""
  commands, in_bash = [], False
  for line in README.read_text().splitlines():
    if FENCE.match(line):
      in_bash = not in_bash and line.strip() == "```bash"
    elif in_bash:
      command = line.split(" #")[0].strip()
      if command:
        commands.append(command)
  return commands


def test_readme_set_up_and_test_commands_are_what_ci_runs():
  commands = ci_commands()
  assert any("setup" in command for command in commands)
  assert any("pytest" in command for command in commands)
  in_readme = [command for command in readme_shell_commands() if command in commands]
  assert in_readme[:len(commands)] == commands, f"the README's first commands are not {commands}"
