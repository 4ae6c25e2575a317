"""The README's settings table names exactly the settings the app reads."""

from __future__ import annotations

import re
from pathlib import Path

from config.settings import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_settings_table_lists_every_setting_and_no_other() -> None:
    documented = set(re.findall(r"^\| `(SHOP_[A-Z_]+)` \|", README.read_text(), re.MULTILINE))
    assert documented == {spec.variable for spec in SETTINGS}


def test_the_readme_starts_with_the_two_commands() -> None:
    head = README.read_text().split("## ")[0]
    assert "make run" in head and "make test" in head
