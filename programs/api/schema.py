"""The two OpenAPI documents: the owner API (/api/schema/) without the utility API, and the
utility API (/api/utility/schema/) alone, with its OAuth 2 client-credentials security scheme."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

UTILITY_PREFIX = "/api/utility/"


def owner_endpoints(endpoints: list[tuple], **kwargs: Any) -> list[tuple]:
    """Preprocessing hook of the owner schema: everything but the utility API."""
    return [endpoint for endpoint in endpoints if not endpoint[0].startswith(UTILITY_PREFIX)]


def utility_endpoints(endpoints: list[tuple], **kwargs: Any) -> list[tuple]:
    """Preprocessing hook of the utility schema: the utility API only."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith(UTILITY_PREFIX)]


SETTINGS = {
    "TITLE": "ChargeScape utility API",
    "DESCRIPTION": (
        "Programs, flexibility forecasts, grid events and delivery reports of one utility, for "
        "its own systems. OAuth 2 client credentials: POST client_id and client_secret to "
        "/api/utility/v1/oauth/token (grant_type=client_credentials) and send the token as "
        "`Authorization: Bearer …`. Scopes: `read` (GET), `dispatch` (POST). See "
        "docs/utility-api.md."
    ),
    "VERSION": "1.0.0",
    "PREPROCESSING_HOOKS": ["programs.api.schema.utility_endpoints"],
    "SCHEMA_PATH_PREFIX": r"/api/utility/v1",
    "ENUM_NAME_OVERRIDES": {
        "ProgramKindEnum": "programs.models.Program.Kind",
        "ProgramStatusEnum": "programs.models.Program.Status",
        "EventKindEnum": "programs.models.GridEvent.Kind",
        "EventStatusEnum": "programs.models.GridEvent.Status",
    },
}


class UtilityOAuth2Scheme(OpenApiAuthenticationExtension):
    target_class = "programs.api.auth.UtilityOAuth2Authentication"
    name = "utilityOAuth2"

    def get_security_definition(self, auto_schema: Any) -> dict:
        return {
            "type": "oauth2",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": "/api/utility/v1/oauth/token",
                    "scopes": {
                        "read": "Read programs, flexibility, events and reports",
                        "dispatch": "Create, dispatch and cancel grid events",
                    },
                }
            },
        }

    def get_security_requirement(self, auto_schema: Any) -> dict:
        method = auto_schema.method.upper()
        return {self.name: ["read" if method in ("GET", "HEAD", "OPTIONS") else "dispatch"]}
