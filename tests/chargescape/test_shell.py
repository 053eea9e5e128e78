"""The mobile-first shell: tabs with empty states, PWA files, static assets, security headers."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

TAB_PAGES = {
    "home": ("Nothing to manage yet", "Link your car"),
    "vehicles:vehicle-list": ("No vehicles linked yet", "Link a car"),
    "programs:program-list": ("No programs to join yet", "Utilities pay you"),
    "programs:earnings": ("No earnings yet", "Join a program"),
    "accounts:account": ("Profile", "Two-factor authentication"),
}


@pytest.mark.parametrize("url_name", TAB_PAGES)
def test_each_tab_shows_its_empty_state_and_the_tab_bar(owner_client, url_name):
    response = owner_client.get(reverse(url_name))
    assert response.status_code == 200
    page = response.content.decode()
    for text in TAB_PAGES[url_name]:
        assert text in page
    assert 'class="tabbar"' in page
    assert 'aria-current="page"' in page
    assert 'name="viewport"' in page


@pytest.mark.parametrize("url_name", TAB_PAGES)
def test_tabs_require_sign_in(client, url_name):
    response = client.get(reverse(url_name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_pages_carry_a_strict_csp_and_no_inline_script(owner_client):
    response = owner_client.get(reverse("home"))
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    page = response.content.decode()
    # Every <script> loads a file (src=) or holds JSON data; none carries inline code.
    for tag in page.split("<script")[1:]:
        head = tag.split(">", 1)[0]
        assert "src=" in head or "application/json" in head, head


def test_manifest_and_service_worker(client):
    manifest = client.get(reverse("manifest")).json()
    assert manifest["display"] == "standalone"
    assert manifest["start_url"] == "/"
    for icon in manifest["icons"]:
        assert client.get(icon["src"]).status_code == 200
    worker = client.get(reverse("service-worker"))
    assert worker.status_code == 200
    assert worker["Content-Type"].startswith("application/javascript")
    assert "/offline/" in worker.content.decode()
    assert client.get(reverse("offline")).status_code == 200


def test_plotly_and_htmx_are_served_locally(client):
    """No CDN: plotly.js comes from the pinned plotly wheel, htmx from django-htmx."""
    plotly = client.get("/static/plotly/plotly.min.js")
    assert plotly.status_code == 200
    assert b"plotly" in b"".join(plotly.streaming_content)[:2000].lower()
    assert client.get("/static/django_htmx/htmx-2.min.js").status_code == 200


def test_api_schema_and_docs_render(owner_client):
    schema = owner_client.get(reverse("api-schema"), HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/v1/me" in schema.json()["paths"]
    assert owner_client.get(reverse("api-docs")).status_code == 200


def test_oversized_body_is_refused(owner_client):
    response = owner_client.post(
        reverse("accounts:account"),
        {"time_zone": "UTC", "service_zip": "1" * (2 * 1024 * 1024)},
    )
    assert response.status_code == 400
