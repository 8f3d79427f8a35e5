"""Item texts: one text per catalog row from a template, as the encoder reads them.

:data:`DEFAULT_TEMPLATE` renders ``"{title}. {categories}. Tags: {tags}. {description}"``;
:func:`check_template` validates a template, :func:`template_words` lists its literal words (kept
out of topic keywords).
"""

from __future__ import annotations

import re
import string

import pandas as pd

from tastemap.errors import InputError

DEFAULT_TEMPLATE = "{title}. {categories}. Tags: {tags}. {description}"
TEMPLATE_FIELDS = ("item_id", "title", "categories", "tags", "description")


def render_item_texts(catalog: pd.DataFrame, template: str = DEFAULT_TEMPLATE) -> list[str]:
    """One text per catalog row from ``template`` (fields: item_id, title, categories, tags,
    description). Categories render as ``A > B`` paths joined by ``, ``; tags joined by ``, ``.
    Sentences left empty by missing fields are removed.
    """
    check_template(template)
    texts = []
    for row in catalog[list(TEMPLATE_FIELDS)].itertuples(index=False):
        text = template.format(
            item_id=row.item_id,
            title=row.title,
            categories=", ".join(" > ".join(path) for path in row.categories),
            tags=", ".join(row.tags),
            description=row.description,
        )
        texts.append(_tidy(text))
    return texts


def check_template(template: str) -> None:
    """Raise :class:`InputError` unless ``template`` is a text template :func:`render_item_texts`
    can fill: balanced braces, only the fields of :data:`TEMPLATE_FIELDS`, no conversion or format."""
    if not isinstance(template, str):
        raise InputError(f"text template should be a string, got {type(template).__name__}")
    fix = "write fields as {title}, and a literal brace as {{ or }}"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(f"text template {template!r} is not valid: {exc}; {fix}") from None
    used = {name for _, name, _, _ in parts if name is not None}
    unknown = sorted(used - set(TEMPLATE_FIELDS))
    if unknown:
        raise InputError(f"text template uses unknown field(s) {unknown}; allowed: {list(TEMPLATE_FIELDS)}; {fix}")
    if any(spec or conversion for _, name, spec, conversion in parts if name is not None):
        raise InputError(f"text template {template!r} formats a field ({{name:spec}} or {{name!r}}); "
                         f"use plain fields such as {{title}}")


def template_words(template: str) -> list[str]:
    """The words of a template's literal text (``Tags`` in ``"{title}. Tags: {tags}"``), which say
    nothing about an item and are kept out of topic keywords."""
    literal = " ".join(text for text, _, _, _ in string.Formatter().parse(template))
    return sorted(set(re.findall(r"[^\W\d_]{2,}", literal.lower())))


def _tidy(text: str) -> str:
    text = re.sub(r"\b[A-Z][a-z]*:\s*\.", ".", text)
    text = re.sub(r"(\.\s*){2,}", ". ", text)
    return text.strip(" .") + "." if text.strip(" .") else ""
