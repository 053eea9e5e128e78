"""ChargeScape settings: one module, driven by the environment (12-factor).

Every value that differs between a laptop and production comes from an environment variable.
Secrets have no production default: with DEBUG off, a missing SECRET_KEY stops the process.
`make run` / `make test` (chargescape.embedded) fill DATABASE_URL, REDIS_URL and a development
SECRET_KEY when they are unset, so nothing here needs to know whether the servers are embedded.
"""

from importlib.util import find_spec
from pathlib import Path

import environ
from django.utils.csp import CSP, build_policy

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = BASE_DIR / ".local"  # embedded servers, dev mail, beat schedule, screenshots

env = environ.Env()

# --- Core ---------------------------------------------------------------------------------------
# Off unless explicitly set: a forgotten variable must never expose tracebacks in production.
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Required in production; development gets one from chargescape.embedded (.local/secret_key).
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
# Old keys still accepted for signed cookies/sessions while rotating SECRET_KEY.
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
# Hosts this deployment answers for; loopback only by default.
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
# Origins trusted for CSRF on unsafe requests (https://app.example.com behind the proxy).
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# Fernet keys for secrets at rest (OAuth tokens): first encrypts, all decrypt (rotation).
FIELD_ENCRYPTION_KEYS = env.list("CHARGESCAPE_FIELD_KEYS", default=[])
# Public base URL printed in mails and used for OAuth redirects.
SITE_URL = env.str("CHARGESCAPE_SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "chargescape.apps.ChargeScapeAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "oauth2_provider",
    "chargescape.apps.ChargeScapeConfig",
    "accounts",
    "vehicles",
    "vehicles.chargers",
    "vehicles.control",
    "programs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "accounts.middleware.UserTimezoneMiddleware",
]

ROOT_URLCONF = "chargescape.urls"
ASGI_APPLICATION = "chargescape.asgi.application"
WSGI_APPLICATION = None  # ASGI only: web and OCPP processes run under uvicorn

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chargescape.context_processors.navigation",
                "programs.context_processors.event_notices",
            ],
        },
    },
]

# --- Data stores ----------------------------------------------------------------------------------
# postgres://user:pass@host:5432/db, or a socket dir as %2F-escaped host (the embedded default).
DATABASES = {"default": env.db_url("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
# Re-check pooled connections before use, so a restarted database does not surface as a 500.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# ASGI processes (web, ocpp) run each request in its own context, so persistent connections pile
# up, one per concurrent request (bench/load.py: 417 of 941 requests answered 500 "too many
# clients" at 50/s). There a bounded psycopg pool per process is used instead: `make run` sets
# DJANGO_DB_POOL_MAX=8 for them; workers and management commands keep CONN_MAX_AGE.
DB_POOL_MAX = env.int("DJANGO_DB_POOL_MAX", default=0)
if DB_POOL_MAX:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": DB_POOL_MAX,
        "timeout": 10,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# redis://host:6379/0 — Celery broker, Channels layer, cache and rate limits share one server.
REDIS_URL = env.str("REDIS_URL")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cs",
        # Fail fast when Redis is away: rate limits and health checks must not hang a request.
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py's default 5 s read timeout equals channels_redis's 5 s blocking pop: under load
        # a consumer's read times out and its charger is dropped. Give reads room.
        "CONFIG": {
            # redis-py 8's asyncio pool refuses the 101st concurrent command by default: 500
            # sockets opening or closing at once failed their group_add / group_discard.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "max_connections": 1000}],
            "prefix": "cs:channels:",
            # Pending messages per process key (all of a process's sockets share one), not per
            # socket: at the default 100, bursts of live updates were dropped (bench/load.py L3).
            "capacity": 5000,
        },
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# --- Auth and accounts (django-allauth) -----------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[ChargeScape] "
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
# Counted in the Redis cache, so every web process shares one counter per IP/key.
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/5m/key",
    "login": "30/m/ip",
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "signup": "20/m/ip",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = True
MFA_PASSKEY_SIGNUP_ENABLED = False
MFA_TOTP_ISSUER = "ChargeScape"
# WebAuthn needs a secure origin; http://127.0.0.1 is only acceptable in development.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = DEBUG
# Program managers must pass MFA within this many seconds before the admin lets them in again.
ADMIN_MFA_MAX_AGE_SECONDS = env.int("CHARGESCAPE_ADMIN_MFA_MAX_AGE", default=12 * 3600)
PROGRAM_MANAGERS_GROUP = "Program managers"

# --- Email ----------------------------------------------------------------------------------------
# consolemail:// in development (mail shows in `make run`'s web log); smtp+tls://… in production.
_mail = env.email_url("EMAIL_URL", default="consolemail://")
_mail_options = {
    "host": _mail.get("EMAIL_HOST"),
    "port": _mail.get("EMAIL_PORT"),
    "username": _mail.get("EMAIL_HOST_USER"),
    "password": _mail.get("EMAIL_HOST_PASSWORD"),
    "use_tls": _mail.get("EMAIL_USE_TLS"),
    "use_ssl": _mail.get("EMAIL_USE_SSL"),
    "file_path": _mail.get("EMAIL_FILE_PATH"),
}
if _mail["EMAIL_BACKEND"].endswith("smtp.EmailBackend"):
    _mail_options["timeout"] = 10  # a slow relay must not hold a worker for minutes
MAILERS = {
    "default": {
        "BACKEND": _mail["EMAIL_BACKEND"],
        "OPTIONS": {key: value for key, value in _mail_options.items() if value},
    }
}
DEFAULT_FROM_EMAIL = env.str(
    "DEFAULT_FROM_EMAIL", default="ChargeScape <no-reply@chargescape.test>"
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Internationalisation -------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"  # storage and scheduling are UTC; pages render in the owner's profile time zone
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=str(LOCAL_DIR / "staticfiles"))
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # plotly.js straight from the pinned plotly wheel: served locally, never from a CDN.
    ("plotly", Path(find_spec("plotly").origin).parent / "package_data"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env.bool("DJANGO_MANIFEST_STATIC", default=not DEBUG)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Serve files found by the finders when collectstatic has not run (development and tests).
WHITENOISE_USE_FINDERS = env.bool("DJANGO_WHITENOISE_USE_FINDERS", default=DEBUG)
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security -------------------------------------------------------------------------------------
# TLS ends at the proxy in production; it tells us the scheme in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# No inline script or style anywhere: everything comes from /static/.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "manifest-src": [CSP.SELF],
    "worker-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    # Linking a car posts a form that redirects to the automaker's consent page; browsers apply
    # form-action to that redirect too (the origins are added below, with VEHICLE_PROVIDERS).
    "form-action": [CSP.SELF],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}


def _static_security_headers(headers, path, url):  # type: ignore[no-untyped-def]
    """WhiteNoise answers /static/ before the CSP and X-Frame-Options middlewares run: the same
    headers here (SECURE_CSP as finally configured, read when a file is first served)."""
    headers["Content-Security-Policy"] = build_policy(SECURE_CSP)
    headers["X-Frame-Options"] = X_FRAME_OPTIONS


WHITENOISE_ADD_HEADERS_FUNCTION = _static_security_headers

# Request size limits: a phone app never needs more; larger bodies are refused before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 500
DATA_UPLOAD_MAX_NUMBER_FILES = 5
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# --- REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON bounded in size (→ 413) and nesting depth (→ 400): chargescape.parsers
    "DEFAULT_PARSER_CLASSES": ["chargescape.parsers.BoundedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "chargescape.api.exception_handler",
    # Per-owner request limits on Redis counters (OWNER_API_RATE_LIMITS); 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["chargescape.throttling.OwnerRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ChargeScape owner API",
    "DESCRIPTION": "Vehicles, preferences, programs and earnings of the signed-in EV owner.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery ---------------------------------------------------------------------------------------
# Queues: `control` (owner opt-out/boost, never waits behind bulk work), `commands` (device I/O),
# `default`, `bulk` (fleet planning, settlement). chargescape/celery.py reads these CELERY_* names.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = False
# Longest task we allow: a fleet planning batch. Hard limit kills a wedged worker child.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_BEAT_SCHEDULE_FILENAME = str(LOCAL_DIR / "celerybeat-schedule")

# --- Logging --------------------------------------------------------------------------------------
# Every handler redacts tokens, VINs, email addresses and precise coordinates (chargescape.logging),
# whoever logged them: libraries print URLs and arguments we do not control.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "chargescape.logging.RedactingFilter"}},
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}


# --- Vehicle clouds ------------------------------------------------------------------------------
# Adapters chosen per provider (vehicles.oem.get_adapter). The origins point at Smartcar in
# production and at the simulated cloud (vehicles/sim/cloud) in the demo and the tests.
def _dev_default(value: str) -> object:
    """A default for development only: in production the variable must be set."""
    return value if DEBUG else environ.Env.NOTSET


# In development everything points at the simulated cloud that `make run` starts.
SMARTCAR_SIM_ORIGIN = env.str("SMARTCAR_SIM_ORIGIN", default="http://127.0.0.1:8090")
VEHICLE_PROVIDERS = {
    "smartcar": {
        "ADAPTER": "vehicles.oem.smartcar.SmartcarAdapter",
        "CLIENT_ID": env.str("SMARTCAR_CLIENT_ID", default=_dev_default("chargescape-demo")),
        "CLIENT_SECRET": env.str("SMARTCAR_CLIENT_SECRET", default=_dev_default("demo-secret")),
        # Application management token: signs webhooks (SC-Signature) and VERIFY challenges.
        "MANAGEMENT_TOKEN": env.str(
            "SMARTCAR_MANAGEMENT_TOKEN", default=_dev_default("demo-management-token")
        ),
        "MODE": env.str("SMARTCAR_MODE", default="live"),
        "API_ORIGIN": env.str(
            "SMARTCAR_API_ORIGIN",
            default=SMARTCAR_SIM_ORIGIN if DEBUG else "https://api.smartcar.com",
        ),
        "AUTH_ORIGIN": env.str(
            "SMARTCAR_AUTH_ORIGIN",
            default=f"{SMARTCAR_SIM_ORIGIN}/oauth/token"
            if DEBUG
            else "https://auth.smartcar.com/oauth/token",
        ),
        "CONNECT_ORIGIN": env.str(
            "SMARTCAR_CONNECT_ORIGIN",
            default=SMARTCAR_SIM_ORIGIN if DEBUG else "https://connect.smartcar.com",
        ),
        "REDIRECT_URI": f"{SITE_URL}/vehicles/link/callback/",
        # Level 2 home charging when the cloud does not report the car's onboard charger.
        "DEFAULT_MAX_AC_KW": 7.2,
        "BRANDS": ["Ford", "BMW", "Honda", "Nissan", "Hyundai", "Kia", "Volkswagen", "Tesla"],
    }
}
SECURE_CSP["form-action"] += sorted({p["CONNECT_ORIGIN"] for p in VEHICLE_PROVIDERS.values()})
# How often telemetry is polled when webhooks are quiet: often while plugged in at home and
# managed, rarely otherwise (polling can wake a sleeping car).
TELEMETRY_POLL_PLUGGED_SECONDS = 5 * 60
TELEMETRY_POLL_IDLE_SECONDS = 30 * 60
# Precise GPS older than this is cut down to at_home only.
PRECISE_LOCATION_RETENTION_DAYS = 30
HOME_GEOFENCE_METERS = 200

# --- Planning ------------------------------------------------------------------------------------
# The tariff used until the owner's utility tariff is known: time-of-use, in the owner's zone,
# per kWh. A typical US residential EV rate: cheap overnight, expensive in the evening peak.
DEFAULT_TARIFF = {
    "currency": "USD",
    "default_price": 0.24,
    "periods": [
        {"start": "00:00", "end": "07:00", "price": 0.11},
        {"start": "16:00", "end": "21:00", "price": 0.45},
    ],
    "export_price": 0.08,
}
# --- Money (programs.ledger, programs.payouts) --------------------------------------------------
# The payout provider adapter; the simulated one (development) reports back by signed webhook to
# /webhooks/payouts/ after SETTLE_SECONDS.
PAYOUT_PROVIDER = {
    "ADAPTER": env.str(
        "PAYOUT_PROVIDER_ADAPTER", default="programs.payouts.SimulatedPayoutProvider"
    ),
    "WEBHOOK_SECRET": env.str(
        "PAYOUT_WEBHOOK_SECRET", default=_dev_default("demo-payout-webhook-secret")
    ),
    "WEBHOOK_URL": env.str(
        "PAYOUT_SIM_WEBHOOK_URL", default="http://127.0.0.1:8000/webhooks/payouts/"
    ),
    "SETTLE_SECONDS": 5,
}
# Owners can cash out once they hold this much (bank transfers cost money below it).
PAYOUT_MINIMUM_CENTS = 1000
# Fleet fan-outs (an event starting or ending) run as tasks of this many cars on the `bulk` queue.
PROGRAMS_FANOUT_BATCH = 500
# Dispatching an event of at least this many kW asks the manager to type the program code.
EVENT_CONFIRM_ABOVE_KW = env.float("EVENT_CONFIRM_ABOVE_KW", default=1000.0)
PLANNING_DEFAULTS = {
    "charge_efficiency": 0.9,
    "discharge_efficiency": 0.9,
    "degradation_cost_per_kwh": 0.04,  # battery wear per discharged kWh (V2G)
    "horizon_slots": 96,  # 24 h when the owner gave no departure
    "max_horizon_slots": 192,  # never plan beyond 48 h
    "soc_drift_replan_pct": 5,  # replan when the car is this far off its planned SoC
}

# --- Utility API and OpenADR 3 (programs.api, programs.openadr, programs.sim) --------------------
# Utilities call /api/utility/v1/ with OAuth 2 client credentials (django-oauth-toolkit); each
# client belongs to one utility and holds the scopes it was granted (programs.api.auth).
OAUTH2_PROVIDER = {
    "SCOPES": {
        "read": "Read programs, flexibility, events and reports",
        "dispatch": "Create, dispatch and cancel grid events",
    },
    "DEFAULT_SCOPES": ["read"],
    "SCOPES_BACKEND_CLASS": "programs.api.auth.ClientScopes",
    # An hour, like most utility integrations expect; clients fetch a new one (no refresh tokens
    # in the client-credentials grant).
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    # OAuth 2.0 Security BCP (RFC 9700): only what the client-credentials grant needs is on;
    # tokens are stored hashed, never accepted in a URL, and no browser grant is allowed.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
    "ALLOW_URI_WILDCARDS": False,
    "PKCE_REQUIRED": True,
}
# django-oauth-toolkit's own application model; named because programs.ApiClient points at it and
# its migrations refer to it through this (swappable) setting.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
# Owner REST API (/api/v1/, chargescape.throttling): requests per minute per signed-in owner,
# reads and writes apart. Ten reads a second sustained is far beyond any phone; a script scraping
# or hammering the API is cut off. Load benchmarks with few owners raise these through the env.
OWNER_API_RATE_LIMITS = {
    "read": env.int("OWNER_API_READ_PER_MINUTE", default=600),
    "write": env.int("OWNER_API_WRITE_PER_MINUTE", default=120),
}
# Event opt-out posts per owner per minute (programs.views.opt_out). Generous on purpose: an
# opt-out is a safety action and must never be refused on its first tries; this only stops a
# client hammering the endpoint (each post locks the participation row).
OPT_OUT_RATE_LIMIT_PER_MINUTE = env.int("OPT_OUT_RATE_LIMIT_PER_MINUTE", default=20)
# Requests per minute per API client (Redis counters shared by every web process), and token
# requests per minute per IP address.
UTILITY_API_RATE_LIMITS = {
    "read": env.int("UTILITY_API_READ_PER_MINUTE", default=600),
    "dispatch": env.int("UTILITY_API_DISPATCH_PER_MINUTE", default=60),
    "token": env.int("UTILITY_API_TOKEN_PER_MINUTE", default=30),
}
# Signed webhooks to utilities on event state changes: per-attempt timeout, then retries with
# backoff up to this many attempts (the beat re-drives what an on-commit send missed).
UTILITY_WEBHOOK_TIMEOUT_SECONDS = 10
UTILITY_WEBHOOK_MAX_ATTEMPTS = 8
# Idempotency keys of POSTs are remembered this long (a client retrying later makes a new event).
UTILITY_API_IDEMPOTENCY_HOURS = 24
# ChargeScape as an OpenADR 3 VEN (polled every 30 s by the beat): our name at the demo's VTN.
OPENADR_VEN_NAME = env.str("OPENADR_VEN_NAME", default="chargescape")
# The demo's simulated VTN (programs/sim, started by `make run`) and the clients it knows; it
# exists only in development, so production needs none of these.
OPENADR_SIM_ORIGIN = env.str("OPENADR_SIM_ORIGIN", default="http://127.0.0.1:8092")
OPENADR_SIM_CLIENTS = {
    "ven": (
        env.str("OPENADR_SIM_VEN_CLIENT_ID", default="chargescape-ven"),
        env.str("OPENADR_SIM_VEN_SECRET", default="demo-ven-secret" if DEBUG else ""),
    ),
    "bl": (
        env.str("OPENADR_SIM_BL_CLIENT_ID", default="utility-bl"),
        env.str("OPENADR_SIM_BL_SECRET", default="demo-bl-secret" if DEBUG else ""),
    ),
}
# The owner API's schema (/api/schema/) leaves the utility API out; it has its own.
SPECTACULAR_SETTINGS["PREPROCESSING_HOOKS"] = ["programs.api.schema.owner_endpoints"]

# --- Execution (vehicles.control) ----------------------------------------------------------------
# Our own deadline around a vehicle-cloud call (the Smartcar SDK waits up to 310 s on its own).
CONTROL_OEM_TIMEOUT_SECONDS = env.float("CONTROL_OEM_TIMEOUT_SECONDS", default=20.0)
# Transient failures retry after base × 2^attempt seconds (jitter, at most 5 min, never before
# Retry-After); a command that failed this many times fails for good and the owner is told.
CONTROL_RETRY_BASE_SECONDS = 5.0
CONTROL_MAX_ATTEMPTS = 8
# After an ambiguous failure (timeout after sending) wait this long, then read the device first.
CONTROL_AMBIGUOUS_SETTLE_SECONDS = 30.0
# A `sending` claim older than this belongs to a worker that died mid-send (longer than the
# device deadline, so a live worker's claim never lapses while it waits for the device).
CONTROL_CLAIM_TIMEOUT_SECONDS = 120.0
# A live command nobody touched for this long lost its broker message: the relay re-drives it.
CONTROL_STALL_AFTER_SECONDS = 120.0

# --- Closed loop (vehicles.control.confirm) ------------------------------------------------------
# A command the car's cloud or charger accepted must show in the car's own telemetry (charging,
# not charging, the new limit) this long after it was sent; cars take a minute or two to start
# drawing power and report it. Without a sign by then we ask the car for a fresh reading and wait
# as long again; still nothing and the command is sent once more, or failed with a diagnosis in
# plain words.
CONTROL_CONFIRM_AFTER_SECONDS = env.int("CONTROL_CONFIRM_AFTER_SECONDS", default=180)

# --- Demo -----------------------------------------------------------------------------------------
# Web and OCPP addresses printed by `make run`.
WEB_PORT = env.int("CHARGESCAPE_WEB_PORT", default=8000)
OCPP_PORT = env.int("CHARGESCAPE_OCPP_PORT", default=8001)
BIND_HOST = env.str("CHARGESCAPE_BIND_HOST", default="127.0.0.1")
# `make run` also starts the simulated vehicle cloud and chargers (on by default in development).
RUN_SIMULATORS = env.bool("CHARGESCAPE_SIMULATORS", default=DEBUG)
# Simulated cars of demo owners linked and enrolled by `make run`, so the manager's dashboard has
# a fleet to show (0: none).
DEMO_FLEET_SIZE = env.int("CHARGESCAPE_DEMO_FLEET", default=40)
