"""The bookshop's manage.py: a minimal Django project that tests/test_django.py
runs against a private PostgreSQL (DATABASE_URL) and Redis (CONVEYOR_REDIS_URL)."""

import os
import sys

from django.core.management import execute_from_command_line

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bookshop.settings")
    execute_from_command_line(sys.argv)
