"""Settings of the test bookshop: PostgreSQL from $DATABASE_URL."""

import os
from urllib.parse import urlsplit

_db = urlsplit(os.environ["DATABASE_URL"])

SECRET_KEY = "only-for-the-tests"
USE_TZ = True
INSTALLED_APPS = ["conveyor.django", "bookshop"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": _db.username,
        "HOST": _db.hostname,
        "PORT": _db.port,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
