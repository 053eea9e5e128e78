"""Money in templates: integer cents shown as dollars ("$2.50", "$1,200")."""

from django import template

register = template.Library()


@register.filter
def dollars(cents: int | None) -> str:
    if cents is None:
        return ""
    text = f"${abs(cents) / 100:,.2f}".replace(".00", "")
    return f"−{text}" if cents < 0 else text
