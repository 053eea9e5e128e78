from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class ChargeScapeConfig(AppConfig):
    """The project package as an app: management commands (runstack, seed_demo) and templates."""

    name = "chargescape"
    verbose_name = "ChargeScape"

    def ready(self) -> None:
        from chargescape import checks  # noqa: F401 — registers the deploy checks


class ChargeScapeAdminConfig(AdminConfig):
    """Django admin with the MFA-gated site (chargescape.admin_site)."""

    default_site = "chargescape.admin_site.ChargeScapeAdminSite"
