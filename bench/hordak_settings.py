"""Throwaway Django settings for measuring django-hordak in ``python -m bench ledger``.

Only what hordak needs: its apps and one PostgreSQL database, given by ``bench.hordak_runs`` in
the environment variable ``BENCH_HORDAK_DATABASE_URL`` before ``django.setup()``. ``DEBUG`` is
off so that Django keeps no log of queries.
"""

import os

from sqlalchemy.engine import make_url

_url = make_url(os.environ["BENCH_HORDAK_DATABASE_URL"])

SECRET_KEY = "bench-only-not-a-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "mptt", "djmoney", "hordak"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.database,
        "USER": _url.username or "",
        "PASSWORD": _url.password or "",
        "HOST": _url.host or "",
        "PORT": str(_url.port or ""),
    }
}
HORDAK_INTERNAL_CURRENCY = "EUR"
DEFAULT_CURRENCY = "EUR"
