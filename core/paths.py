"""Where the data folders of the repository are."""

from __future__ import annotations

from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = REPO_DIR / "templates"
EXAMPLES_DIR = REPO_DIR / "examples"
