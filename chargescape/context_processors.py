"""Template context shared by every page: the tab bar."""

import functools

from django.http import HttpRequest
from django.urls import get_script_prefix, reverse

TABS = (
    ("home", "Home", "home"),
    ("vehicles", "Vehicles", "vehicles:vehicle-list"),
    ("programs", "Programs", "programs:program-list"),
    ("earnings", "Earnings", "programs:earnings"),
    ("account", "Account", "accounts:account"),
)


@functools.cache
def _tabs(script_prefix: str) -> tuple[tuple[str, str, str], ...]:
    # (key, label, url): the bar is drawn twice on every page (top and bottom); reversing its
    # URLs once a process instead of ten times a page. The prefix is part of every URL.
    return tuple((key, label, reverse(url_name)) for key, label, url_name in TABS)


def navigation(request: HttpRequest) -> dict[str, object]:
    return {"nav_tabs": _tabs(get_script_prefix())}
