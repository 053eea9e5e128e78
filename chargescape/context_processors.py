"""Template context shared by every page: the tab bar."""

from django.http import HttpRequest

TABS = (
    ("home", "Home", "home"),
    ("vehicles", "Vehicles", "vehicles:vehicle-list"),
    ("programs", "Programs", "programs:program-list"),
    ("earnings", "Earnings", "programs:earnings"),
    ("account", "Account", "accounts:account"),
)


def navigation(request: HttpRequest) -> dict[str, object]:
    return {"nav_tabs": TABS}
