"""The README's "Guarantees" section names, for each promise, the tests that check it: every one
it names exists in the file it names."""

from __future__ import annotations

import re

from tests.integration.harness import EXAMPLE_DIR


def test_readme_guarantees_name_tests_that_exist() -> None:
    """Every test the README's "Guarantees" section cites (``path::name``) exists in that file."""
    readme = (EXAMPLE_DIR.parent / "README.md").read_text()
    section = readme.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    # Any `something::test_name`, so that a citation that is not a path fails here too.
    cited = re.findall(r"`([^`\s]+)::(test_\w+)`", section)
    assert len(cited) >= 15
    for path, name in cited:
        file = EXAMPLE_DIR.parent / path
        assert file.is_file() and f"def {name}(" in file.read_text(), (path, name)
