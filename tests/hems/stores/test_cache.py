"""Both cache implementations against the same expectations (Redis is the real server)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from hems.errors import ServiceUnavailable
from hems.settings import Profile, RedisSettings, Settings
from hems.stores.cache import Cache, MemoryCache, RedisCache, get_cache


def _redis_settings(**kw: object) -> RedisSettings:
    host = os.environ.get("HEMS_REDIS__HOST", "127.0.0.1")
    port = int(os.environ.get("HEMS_REDIS__PORT", "6379"))
    return RedisSettings(**{"host": host, "port": port, **kw})


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.stack)])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    prefix = request.getfixturevalue("redis_prefix")
    c = RedisCache(_redis_settings(key_prefix=prefix))
    yield c
    c.close()


def test_json_roundtrip(cache: Cache) -> None:
    value = {"household_id": "hh-0001", "power_w": 412.5, "tags": ["전력", None], "ok": True, "n": 3}
    cache.set_json("latest:hh-0001", value)
    assert cache.get_json("latest:hh-0001") == value
    cache.set_json("latest:hh-0001", [1, 2])  # overwrite replaces
    assert cache.get_json("latest:hh-0001") == [1, 2]
    assert cache.get_json("missing") is None


def test_ttl_expires(cache: Cache) -> None:
    cache.set_json("answer", {"v": 1}, ttl_s=0.3)
    cache.set_json("forever", {"v": 2})
    assert cache.get_json("answer") == {"v": 1}
    time.sleep(0.45)
    assert cache.get_json("answer") is None
    assert cache.get_json("forever") == {"v": 2}
    with pytest.raises(ValueError):
        cache.set_json("answer", 1, ttl_s=0)


def test_hash_of_json_values(cache: Cache) -> None:
    assert cache.hgetall_json("devices:hh-0001") == {}
    cache.hset_json("devices:hh-0001", {"hh-0001-meter": {"power_w": 300}, "hh-0001-plug": None})
    cache.hset_json("devices:hh-0001", {"hh-0001-meter": {"power_w": 310}, "hh-0001-env": 21.5})
    assert cache.hgetall_json("devices:hh-0001") == {
        "hh-0001-meter": {"power_w": 310},
        "hh-0001-plug": None,
        "hh-0001-env": 21.5,
    }


def test_sorted_set_order_and_ranks(cache: Cache) -> None:
    cache.zadd("lb", {"hh-a": 10.0, "hh-b": 30.0, "hh-c": 20.0, "hh-d": 20.0})
    # Ties: member descending, exactly as Redis ZREVRANGE.
    assert cache.ztop("lb", 10) == [("hh-b", 30.0), ("hh-d", 20.0), ("hh-c", 20.0), ("hh-a", 10.0)]
    assert cache.ztop("lb", 2, offset=1) == [("hh-d", 20.0), ("hh-c", 20.0)]
    assert cache.ztop("lb", 5, offset=10) == []
    assert [cache.zrank_desc("lb", m) for m in ("hh-b", "hh-d", "hh-c", "hh-a")] == [0, 1, 2, 3]
    assert cache.zrank_desc("lb", "hh-zzz") is None
    assert cache.zrank_desc("no-such-board", "hh-a") is None

    cache.zadd("lb", {"hh-a": 99.5})  # update moves the member
    assert cache.ztop("lb", 1) == [("hh-a", 99.5)]
    assert cache.zrank_desc("lb", "hh-b") == 1


def test_delete_and_delete_prefix(cache: Cache) -> None:
    for key in ("lb:2025-07", "lb:2025-08", "lbx", "other", "a*b:1", "axb:1"):
        cache.set_json(key, 1)
    cache.hset_json("lb:hash", {"f": 1})

    assert cache.delete_prefix("lb:") == 3
    assert cache.get_json("lb:2025-07") is None and cache.hgetall_json("lb:hash") == {}
    assert cache.get_json("lbx") == 1 and cache.get_json("other") == 1

    assert cache.delete_prefix("a*b") == 1  # glob characters are literal
    assert cache.get_json("axb:1") == 1

    assert cache.delete("lbx", "other", "never-set") == 2
    assert cache.get_json("other") is None


def test_incr_window_counts_hits_then_forgets_them(cache: Cache) -> None:
    window = 1.0
    assert [cache.incr_window("rl:user-1", window) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert cache.incr_window("rl:user-2", window) == 1  # independent keys
    time.sleep(0.6)
    assert cache.incr_window("rl:user-1", window) == 6
    assert cache.incr_window("rl:user-1", window) == 7
    time.sleep(0.6)  # the first five are now older than the window, the last two are not
    assert cache.incr_window("rl:user-1", window) == 3


def test_incr_window_is_atomic_under_threads(cache: Cache) -> None:
    threads, hits = 4, 50

    def hammer() -> None:
        for _ in range(hits):
            cache.incr_window("rl:burst", 60)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert cache.incr_window("rl:burst", 60) == threads * hits + 1


def test_score_ranges_removal_and_pipelined_hashes(cache: Cache) -> None:
    cache.zadd("due", {"a": 1.0, "b": 5.0, "c": 3.0, "d": 9.0})
    assert cache.zrange_by_score("due", float("-inf"), 5.0) == [("a", 1.0), ("c", 3.0), ("b", 5.0)]
    assert cache.zrem("due", "a", "zz") == 1
    assert cache.zrange_by_score("due", 2.0, 4.0) == [("c", 3.0)]
    assert cache.zrange_by_score("none", 0, 10) == [] and cache.zrem("none", "x") == 0

    cache.hset_json_many({"h1": {"x": {"v": 1}}, "h2": {"y": [2]}, "h3": {}})
    cache.hset_json_many({"h1": {"z": None}})
    assert cache.hgetall_json_many(["h1", "missing", "h2"]) == [{"x": {"v": 1}, "z": None}, {}, {"y": [2]}]
    assert cache.hgetall_json_many([]) == []


def test_ping(cache: Cache) -> None:
    cache.ping()


@pytest.mark.stack
def test_redis_keys_carry_the_prefix(redis_prefix: str) -> None:
    import redis

    settings = _redis_settings(key_prefix=redis_prefix)
    RedisCache(settings).set_json("k", {"a": 1})
    raw = redis.Redis(host=settings.host, port=settings.port)
    assert raw.get(redis_prefix + "k") == b'{"a":1}'
    assert RedisCache(_redis_settings(key_prefix=redis_prefix + "other:")).get_json("k") is None


def test_unreachable_redis_is_one_clear_error() -> None:
    cache = RedisCache(_redis_settings(port=1))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"Redis is not reachable at 127\.0\.0\.1:1") as err:
        cache.ping()
    assert "hems services up" in str(err.value)
    assert time.monotonic() - started < 5
    with pytest.raises(ServiceUnavailable):
        cache.get_json("k")


def test_get_cache_by_profile(tmp_path) -> None:
    local = Settings(profile=Profile.local, data_dir=tmp_path)
    assert isinstance(get_cache(local), MemoryCache)
    assert get_cache(local) is get_cache(local)  # one per process
    stack = Settings(profile=Profile.stack, redis=_redis_settings(key_prefix="hems_test_factory:"))
    redis_cache = get_cache(stack)
    assert isinstance(redis_cache, RedisCache) and redis_cache.prefix == "hems_test_factory:"
    assert get_cache(stack) is redis_cache
