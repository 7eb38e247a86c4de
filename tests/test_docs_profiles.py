"""Every `vaelab train FAMILY ... --profile NAME` the docs show names a profile that family ships:
a renamed or removed profile (or a typo) turns a documented command into an error."""
from __future__ import annotations

import re
from pathlib import Path

from vaelab import profiles
from vaelab.models import names

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"vaelab\s+(train-prior|train)\s+(\S+)(.*)")
PROFILE = re.compile(r"--profile[\s=]+([\w.|-]+)")


def command_spans(text: str) -> list[str]:
    """The command lines of a markdown text: code-block lines (comments cut, continuations
    joined) and inline `code` spans of prose lines."""
    spans, in_block = [], False
    for line in text.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
        elif in_block:
            spans.append(line.split(" #")[0])
        else:
            spans.extend(re.findall(r"`([^`]+)`", line))
    return spans


def unknown_profiles(text: str) -> list[str]:
    """'FAMILY --profile NAME' for each documented command whose profile FAMILY does not ship."""
    bad = []
    for span in command_spans(text):
        for sub, family, rest in COMMAND.findall(span):
            family = "vq-prior" if sub == "train-prior" else family
            if family.isupper():  # a placeholder (FAMILY) over every family
                continue
            for name in PROFILE.findall(rest):
                if name.isupper() or "|" in name:  # NAME, quick|paper: placeholders
                    continue
                if family not in names() or name not in profiles.profile_names(family):
                    bad.append(f"{family} --profile {name}")
    return bad


def test_every_documented_profile_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = {page.name: unknown_profiles(page.read_text()) for page in pages}
    assert {page: bad for page, bad in found.items() if bad} == {}
    assert any("--profile" in s for p in pages for s in command_spans(p.read_text()))  # the scan sees commands


def test_the_check_catches_a_wrong_profile_in_a_block_and_in_prose():
    text = ("```\nvaelab train pixelcnn --data mnist --profile long --out r   # the old file's name\n"
            "vaelab train vae --data mnist \\\n    --profile paper\n```\n"
            "Run `vaelab train cvae --profile quick`, or `vaelab train-prior RUN --profile pape`; "
            "`vaelab train FAMILY --profile NAME` and `python benchmarks/iwae_vae.py --profile long` are fine.\n")
    assert unknown_profiles(text) == ["pixelcnn --profile long", "vq-prior --profile pape"]
