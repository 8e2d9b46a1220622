"""The settings as Markdown: one section and table per group, in declaration order.

docs/configuration.md is this page's body (`make docs`, scripts/make_docs.py) and
`tilewright config --markdown` prints it; tests/test_config.py checks the page is up to date.
"""

from __future__ import annotations

from tilewright.config import GROUP_TITLES, Settings


def group_of(name: str) -> str:
    """The group a setting is declared in (`json_schema_extra=GROUP`)."""
    extra = Settings.model_fields[name].json_schema_extra
    group = extra.get("group") if isinstance(extra, dict) else None
    if not isinstance(group, str) or group not in GROUP_TITLES:
        raise LookupError(f"setting {name} has no group: give its Field json_schema_extra=ONE_OF_THE_GROUPS")
    return group


def settings_table() -> str:
    """Every setting as Markdown, one `##` section and table per group in `GROUP_TITLES` order (the fields of a
    group in declaration order; two groups are declared in mixins of their own, which pydantic lists first).

    docs/configuration.md is this under a heading (scripts/make_docs.py) and `tilewright config --markdown` prints it.
    """
    grouped: dict[str, list[str]] = {}
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True, validated_data={})
        if name == "workers":
            default = "cores / 2"
        shown = "" if default is None else (", ".join(map(str, default)) if isinstance(default, list) else default)
        description = (field.description or "").replace("|", "\\|")
        grouped.setdefault(group_of(name), []).append(
            f"| `{name}` | `TILEWRIGHT_{name.upper()}` | `{shown}` | {description} |"
        )
    sections = []
    for group in GROUP_TITLES:
        rows = grouped.get(group, [])
        header = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
        sections.append("\n".join([f"## {GROUP_TITLES[group]}", "", *header, *rows]))
    return "\n\n".join(sections)
