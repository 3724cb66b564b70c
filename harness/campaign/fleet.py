"""One campaign across machines on Redis (filled in below)."""
from __future__ import annotations

from ..errors import UsageError


def _client(url: str):
    try:
        import redis
    except ImportError as exc:
        raise UsageError("--db redis://... needs the redis client: pip install -e '.[redis]'") from exc
    return redis.Redis.from_url(url, socket_connect_timeout=5)


def check_redis(url: str) -> None:
    """A shared store that cannot be reached is an error before any job starts."""
    import redis

    try:
        _client(url).ping()
    except (redis.RedisError, ValueError) as exc:
        raise UsageError(f"cannot reach the example database {url}: {exc}") from None


def redis_example_database(url: str):
    from hypothesis.extra.redis import RedisExampleDatabase

    return RedisExampleDatabase(_client(url))
