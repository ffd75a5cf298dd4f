"""Rendering notification templates (Jinja2, autoescaped HTML + plain text, Russian and English)."""

from notifier.messages.render import (
    LOCALES,
    SAMPLE_VARIABLES,
    TEMPLATES,
    RenderedEmail,
    TemplateValueMissingError,
    UnknownTemplateError,
    render_email,
)

__all__ = [
    "LOCALES",
    "SAMPLE_VARIABLES",
    "TEMPLATES",
    "RenderedEmail",
    "TemplateValueMissingError",
    "UnknownTemplateError",
    "render_email",
]
