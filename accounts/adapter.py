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

    def _get_login_attempts_cache_key(self, request, **credentials):  # type: ignore[no-untyped-def]
        """The per-account key of allauth's `login_failed` limit: the email address alone.

        allauth prefixes the site's domain, which without django.contrib.sites is the request's
        Host header, port included; ALLOWED_HOSTS ignores the port, so `Host: app:1`, `app:2`, …
        each got a fresh count and the per-account limit could be reset at will. allauth calls
        this hook both to count failures and to clear them after a password reset.
        """
        login = credentials.get("email", credentials.get("username", "")) or ""
        return f"account:{login.strip().lower()}"

    def send_mail(self, template_prefix, email, context):  # type: ignore[no-untyped-def]
        context.setdefault("site_url", settings.SITE_URL)
        super().send_mail(template_prefix, email, context)
