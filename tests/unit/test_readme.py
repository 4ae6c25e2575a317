"""The README guides a newcomer, and the docs it points to are where it says."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def test_the_readme_starts_with_the_two_commands() -> None:
    head = README.read_text().split("## ")[0]
    assert "make run" in head and "make test" in head


def test_the_readme_is_a_short_guide() -> None:
    assert len(README.read_text().splitlines()) <= 250


def test_every_link_of_the_readme_and_the_docs_leads_to_a_file() -> None:
    for page in [README, *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_nothing_points_outside_the_repository() -> None:
    """Every page or path a page names is a file of the repository (a reader has no other)."""
    named = re.compile(r"(?:\.\./)+[\w./-]+|[\w./-]+\.md\b")
    for page in [README, *DOCS.glob("*.md")]:
        for target in named.findall(page.read_text()):
            here = [(base / target).resolve() for base in (page.parent, ROOT)]
            assert any(p.is_relative_to(ROOT) and p.exists() for p in here), (
                f"{page.name} names {target}, which is not in the repository")


def test_no_page_narrates_a_day() -> None:
    dated = re.compile(r"\b20\d\d-\d\d-\d\d\b")
    for page in [README, *DOCS.glob("*.md")]:
        assert not dated.findall(page.read_text()), f"{page.name} tells what happened on a day"


def test_the_first_order_is_five_commands_against_the_shop_of_make_run() -> None:
    from tests.integration.launcher import first_order_commands

    commands = first_order_commands(README.read_text())
    assert len(commands) == 5
    assert all("localhost:6066" in command for command in commands)


def test_every_product_of_the_demo_catalog_has_its_picture() -> None:
    import json

    catalog = json.loads((ROOT / "scripts" / "demo_catalog.json").read_text())
    products = catalog["products"] if isinstance(catalog, dict) else catalog
    missing = [p["image_url"] for p in products
               if not (ROOT / "web" / p["image_url"].lstrip("/")).is_file()]
    assert missing == []
