"""allauth behaviour for ChargeScape (settings.ACCOUNT_ADAPTER)."""

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings

from chargescape import ratelimit


class AccountAdapter(DefaultAccountAdapter):
    def get_client_ip(self, request):  # type: ignore[no-untyped-def]
        """The client address for rate limits.

        Only REMOTE_ADDR counts: uvicorn rewrites it from X-Forwarded-For solely for the proxies
        listed in FORWARDED_ALLOW_IPS, so a spoofed header cannot reset a limit.
        """
        return ratelimit.client_ip(request)

    def send_mail(self, template_prefix, email, context):  # type: ignore[no-untyped-def]
        context.setdefault("site_url", settings.SITE_URL)
        super().send_mail(template_prefix, email, context)
