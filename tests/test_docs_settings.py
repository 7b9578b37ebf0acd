"""The settings table of docs/settings.md is generated from ``SETTINGS``, never kept by hand.

``settings_table()`` renders the one list of settings (sync/config/settings.py) as the table;
the test holds the table between the markers in docs/settings.md equal to it. After a setting
changes, ``.venv/bin/python -m tests.test_docs_settings`` writes the table again.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Final

from sync.config.settings import SETTINGS, SettingSpec

SETTINGS_DOC: Final = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
BEGIN: Final = ("<!-- The table below is generated from SETTINGS (sync/config/settings.py): "
                "`.venv/bin/python -m tests.test_docs_settings` writes it. -->")
END: Final = "<!-- End of the generated settings table. -->"
HEADER: Final = "| setting | default | meaning |\n|---|---|---|"
_NAMES: Final = re.compile("|".join(re.escape(name) for name in
                                    sorted((s.name for s in SETTINGS), key=len, reverse=True)))


def default_cell(spec: SettingSpec) -> str:
    """The default as the table shows it: required, none, empty, or the value."""
    if spec.default is None:
        return "(required)" if spec.required else ""
    return f"`{spec.default}`" if spec.default else "(empty)"


def meaning_cell(doc: str) -> str:
    """The setting's meaning with every setting name it mentions as code (and ``<``, ``|``
    escaped, so a placeholder is not taken for HTML nor a pipe for a cell's end)."""
    marked = _NAMES.sub(lambda found: f"`{found.group(0)}`", doc)
    return marked.replace("<", "&lt;").replace("|", "\\|")


def settings_table() -> str:
    """The table, one row per setting in ``SETTINGS`` order."""
    rows = [f"| `{spec.name}` | {default_cell(spec)} | {meaning_cell(spec.doc)} |"
            for spec in SETTINGS]
    return "\n".join([HEADER, *rows])


def documented_table(text: str) -> str:
    """The generated part of docs/settings.md (between the markers)."""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def with_table(text: str, table: str) -> str:
    """docs/settings.md with its generated part replaced by ``table``."""
    before, rest = text.split(BEGIN, 1)
    return f"{before}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}"


def test_the_settings_table_is_generated_from_the_settings_source() -> None:
    documented = documented_table(SETTINGS_DOC.read_text())
    assert documented == settings_table(), (
        "docs/settings.md lags SETTINGS: run `.venv/bin/python -m tests.test_docs_settings`")


def test_the_generator_shows_each_kind_of_default() -> None:
    cells = {spec.name: default_cell(spec) for spec in SETTINGS}
    assert cells["ENRICHMENT_URL"] == "(required)"
    assert cells["DATAVERSE_URL"] == ""
    assert cells["SYNC_DEFINITION"] == "(empty)"
    assert cells["SYNC_WRITE_MODE"] == "`bulk`"


def test_the_meaning_marks_every_setting_it_names_once() -> None:
    assert meaning_cell("refused unless DATAVERSE_URL is set; see SYNC_DEFINITIONS, "
                        "not SYNC_DEFINITION") == (
        "refused unless `DATAVERSE_URL` is set; see `SYNC_DEFINITIONS`, not "
        "`SYNC_DEFINITION`")


def main() -> int:
    """Write the generated table into docs/settings.md."""
    SETTINGS_DOC.write_text(with_table(SETTINGS_DOC.read_text(), settings_table()))
    sys.stdout.write(f"{SETTINGS_DOC}: {len(SETTINGS)} settings\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
