"""{% notification_bell %}: the top bar's bell with the unread count, on every signed-in page."""

from django import template

from accounts.notifications import selectors

register = template.Library()


@register.inclusion_tag("notifications/_bell.html", takes_context=True)
def notification_bell(context: template.Context) -> dict[str, object]:
    unread, latest_id = selectors.bell_state(owner=context["request"].user)
    return {"unread": unread, "latest_id": latest_id}
