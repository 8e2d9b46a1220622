"""Rewrite the README's configuration table from the Settings class (`make docs`)."""

from pathlib import Path

from tilewright.config import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"

text = README.read_text()
head, _, rest = text.partition(START)
_, _, tail = rest.partition(END)
README.write_text(f"{head}{START}\n{settings_table()}\n{END}{tail}")
print(f"updated {README}")
