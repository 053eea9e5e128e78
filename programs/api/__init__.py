"""The utility REST API (`/api/utility/v1/`): OAuth 2 client credentials per utility, programs,
flexibility, grid events, reports and signed webhooks. See docs/utility-api.md."""
