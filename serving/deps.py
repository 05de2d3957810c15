"""Dependencies shared by the routers: settings and stores, built once per process."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.engine import Engine

from hems.settings import Settings, get_settings
from hems.stores import appdb
from hems.stores.cache import Cache, get_cache
from hems.stores.raw_store import RawStore, get_raw_store


def settings_dep() -> Settings:
    return get_settings()


@lru_cache(maxsize=1)
def raw_store_dep() -> RawStore:
    return get_raw_store()


def cache_dep() -> Cache:
    return get_cache()


def engine_dep() -> Engine:
    return appdb.get_engine(get_settings().app_database_url)
