"""PLM Portal settings: one module, driven by the environment (see .env.example)."""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

DATA_DIR = Path(env.str("PLM_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DJANGO_DEBUG", default=False)


def _secret_key() -> str:
    """The secret key comes from the environment; the embedded set-up generates one in DATA_DIR."""
    key = env.str("DJANGO_SECRET_KEY", default="")
    if key:
        return key
    from django.core.management.utils import get_random_secret_key

    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(get_random_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

# Fernet keys that encrypt provider secrets at rest (apps/gateway/secrets.py): comma-separated,
# newest first; older keys stay readable until `manage.py rotate_secrets` re-encrypts under the
# newest. Empty: the embedded set-up generates one into DATA_DIR/secret_keys (mode 0600).
PLM_SECRET_KEYS = env.list("PLM_SECRET_KEYS", default=[])

# The call pipeline's retries: exponential backoff with full jitter, base and cap in seconds;
# a 429's Retry-After is honoured up to its own cap.
GATEWAY_BACKOFF_BASE_SECONDS = env.float("GATEWAY_BACKOFF_BASE_SECONDS", default=0.25)
GATEWAY_BACKOFF_CAP_SECONDS = env.float("GATEWAY_BACKOFF_CAP_SECONDS", default=8.0)
GATEWAY_RETRY_AFTER_CAP_SECONDS = env.float("GATEWAY_RETRY_AFTER_CAP_SECONDS", default=30.0)
# Non-streaming provider calls to plain http:// upstreams (local vLLM, Ollama, llama.cpp) use
# the lean keep-alive client (apps/gateway/http11.py, about 1 ms less per call than httpx):
# "gateway" (default) while the subscribers' /v1 gateway serves a request, "1" everywhere, "0"
# nowhere. Celery workers keep httpx by default: with the lean client, an evaluation run whose
# prefork pool process was killed mid-chunk did not finish (not understood yet).
GATEWAY_LEAN_HTTP = env.str("GATEWAY_LEAN_HTTP", default="gateway")
# Playground batch runs: the most dataset rows one batch takes, and rows per chunk task.
PLAYGROUND_BATCH_MAX_ROWS = env.int("PLAYGROUND_BATCH_MAX_ROWS", default=10_000)
PLAYGROUND_BATCH_CHUNK_SIZE = env.int("PLAYGROUND_BATCH_CHUNK_SIZE", default=25)
# Developer portal: API key lifetime (default and longest, days) and how long a rotated key keeps
# working (hours); how often the usage rollups are recomputed (seconds, Celery beat); the
# address developers reach the portal and the gateway at (docs examples and e-mails).
PORTAL_KEY_DEFAULT_DAYS = env.int("PORTAL_KEY_DEFAULT_DAYS", default=90)
PORTAL_KEY_MAX_DAYS = env.int("PORTAL_KEY_MAX_DAYS", default=365)
PORTAL_KEY_ROTATION_GRACE_HOURS = env.float("PORTAL_KEY_ROTATION_GRACE_HOURS", default=24.0)
PORTAL_ROLLUP_EVERY_SECONDS = env.float("PORTAL_ROLLUP_EVERY_SECONDS", default=60.0)
PORTAL_PUBLIC_URL = env.str("PORTAL_PUBLIC_URL", default="http://127.0.0.1:8000")

# --- Audit checkpoints (apps/audit/checkpoints.py, signing.py) -------------------------------
# The Ed25519 key that signs checkpoints of the audit chain, kept outside the database:
# AUDIT_SIGNING_KEY (base64 of the 32 raw bytes, or a PEM), else AUDIT_SIGNING_KEY_FILE
# (generated with mode 0600 on first use). Public keys of rotated-out signing keys (PEMs, one
# after another) stay in AUDIT_PUBLIC_KEYS_EXTRA so older checkpoints remain verifiable.
AUDIT_SIGNING_KEY = env.str("AUDIT_SIGNING_KEY", default="")
AUDIT_SIGNING_KEY_FILE = env.str(
    "AUDIT_SIGNING_KEY_FILE", default=str(DATA_DIR / "audit-signing-key.pem")
)
AUDIT_PUBLIC_KEYS_EXTRA = [
    pem for pem in [env.str("AUDIT_PUBLIC_KEYS_EXTRA", default="").strip()] if pem
]
# A checkpoint every N events (in the appending transaction; 0: only the periodic ones), and
# the longest an event stays unanchored on a quiet system (the beat task, seconds).
AUDIT_CHECKPOINT_EVERY = env.int("AUDIT_CHECKPOINT_EVERY", default=1000)
AUDIT_CHECKPOINT_INTERVAL_SECONDS = env.float("AUDIT_CHECKPOINT_INTERVAL_SECONDS", default=3600.0)
# The Celery queue verification runs go to (empty: Celery's default queue).
AUDIT_TASK_QUEUE = env.str("AUDIT_TASK_QUEUE", default="")
# --- end Audit checkpoints -------------------------------------------------------------------
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "simple_history",
    "django_htmx",
    "axes",
    "django_prometheus",
    "apps.core",
    "apps.audit",
    "apps.accounts",
    "apps.catalog",
    "apps.releases",
    "apps.changes",
    "apps.gateway",
    "apps.playground",
    "apps.evaluations",
    "apps.portal",
    "apps.compliance",
    "apps.lifecycle",
    "apps.demo",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.accounts.middleware.ReadOnlyRoleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "plmportal.urls"
WSGI_APPLICATION = "plmportal.wsgi.application"
ASGI_APPLICATION = "plmportal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.core.context_processors.navigation",
                "apps.changes.context_processors.review_queue",
                "apps.portal.context_processors.portal_queue",
            ],
        },
    },
]

# --- Database: SQLite in DATA_DIR unless DATABASE_URL says otherwise -------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'plm.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file (not :memory:) so a Celery worker process can share the test database; one per
    # test process so concurrent runs do not trample each other.
    DATABASES["default"]["TEST"] = {
        "NAME": env.str("PLM_TEST_SQLITE", default=str(DATA_DIR / f"test-{os.getpid()}.sqlite3"))
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, cache and rate limits when REDIS_URL is set --------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }

# --- Celery ----------------------------------------------------------------------------------
BROKER_DIR = DATA_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
else:
    for sub in ("out", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    (DATA_DIR / "results").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # the folder is polled: 0.1 s instead of kombu's 1 s before a worker sees a task
        "polling_interval": 0.1,
    }
    CELERY_RESULT_BACKEND = f"file://{DATA_DIR / 'results'}"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Auth ------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row

# Failed logins are throttled per username and address (django-axes).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/lockout.html"
AXES_VERBOSE = False

PERSONAL_TOKEN_DEFAULT_DAYS = env.int("PERSONAL_TOKEN_DEFAULT_DAYS", default=90)
DEMO_PASSWORD = env.str("DEMO_PASSWORD", default="demo-pass-123")

# --- REST API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.PersonalTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.Pagination",
    "PAGE_SIZE": 25,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PLM Portal API",
    "DESCRIPTION": "Product Lifecycle Management for LLM-powered products.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "ReleaseStatusEnum": "apps.releases.models.ReleaseStatus",
        "TokenStatusEnum": "apps.accounts.api.serializers.TOKEN_STATUSES",
        "ProviderKindEnum": "apps.gateway.models.ProviderKind",
        "KindEnum": "apps.changes.models.CRKind",  # keeps its name beside ProviderKindEnum
    },
}

# --- i18n, static, media ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "media/"
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATASET_MAX_BYTES = env.int("DATASET_MAX_BYTES", default=200 * 1024 * 1024)

# --- Email -----------------------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="plm-portal@localhost")
# The SMTP backend's server (EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend).
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)

# --- Compliance: payload retention ------------------------------------------------------------
# Provider-call payloads (prompt and output text; playground, batch and evaluation texts too)
# are cleared by ``manage.py purge_payloads`` (and weekly under celery beat) once older than
# this many days; the call metadata stays. The floor is 180 days: a lower value stops start-up
# (system check compliance.E001). Audit events and history are never deleted.
PAYLOAD_RETENTION_DAYS = env.int("PAYLOAD_RETENTION_DAYS", default=365)
PAYLOAD_RETENTION_FLOOR_DAYS = 180
PAYLOAD_PURGE_EVERY_SECONDS = env.float("PAYLOAD_PURGE_EVERY_SECONDS", default=7 * 86400.0)
# --- end Compliance ----------------------------------------------------------------------------

# --- Lifecycle: how often the beat task retires products whose sunset date has passed ----------
LIFECYCLE_SUNSET_EVERY_SECONDS = env.float("LIFECYCLE_SUNSET_EVERY_SECONDS", default=3600.0)

# --- Security --------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
# TLS is terminated by the reverse proxy, which also sets HSTS and redirects to https.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]

# --- Logging: one JSON object a line, with the request id ------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "apps.core.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # One INFO line per provider request: the pipeline records every call in ProviderCall.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
