"""One campaign across machines on Redis: `--db redis://HOST[:PORT][/DB]/NAME`.

Every campaign started with the same URL shares, under the keys `iq1m:NAME:*`:

    examples:*          Hypothesis's example database (each failure's choice sequences)
    failure:<id>        a hash per signature: the record's info (JSON), the case file's
                        bytes, whether it is minimised, and `first_seen`, set once (HSETNX)
                        by whoever saw it first: host, job, time
    failures            the set of signature ids
    claim:<id>          who is minimising it: set with NX and a TTL that the minimising job
                        renews; "done" (no TTL) once minimised. A machine that dies stops
                        renewing, the claim expires, and the next machine to see the failure
                        minimises it (from its own sighting, or from the choice sequence
                        in examples:*)
    stats:<campaign>:<job>   each job's counters (JobStats JSON), for the merged report
    campaigns           each campaign's settings

Each campaign also keeps the records it knows in its own OUT/failures (a mirror: the
record and its repro script, written like the directory store's), so a machine that
loses the connection still has what it saved, and `sync()` brings every record found
anywhere into it (a machine that joins late replays them first).
`iq1m-harness report --db URL --out DIR` writes the merged report.{json,md,png}
(harness.campaign.report.merged_report). `open_store` and `example_database` choose between
the directory and the Redis forms for the rest of the campaign.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

from ..errors import UsageError
from .signature import Signature
from .store import FailureStore

CLAIM_TTL = 120          # seconds a claim lives without renewal
STATS_EVERY = 5.0        # seconds between a job's pushes of its counters
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")

# save a record unless that would replace a minimised one by one that is not, or one that
# exists when only_if_absent; first_seen is set by the first writer only
_SAVE = """
local cur = redis.call('HGET', KEYS[1], 'minimised')
if cur then
  if ARGV[4] == '1' then return 0 end
  if cur == '1' and ARGV[3] == '0' then return 0 end
end
redis.call('HSETNX', KEYS[1], 'first_seen', ARGV[5])
redis.call('HSET', KEYS[1], 'info', ARGV[1], 'case', ARGV[2], 'minimised', ARGV[3], 'updated', ARGV[6])
redis.call('SADD', KEYS[2], ARGV[7])
if ARGV[3] == '1' then redis.call('SET', KEYS[3], 'done') end
return 1
"""


def parse_url(url: str) -> tuple[str, str]:
    """redis://HOST[:PORT][/DB][/NAME] -> (the client's URL, the campaign name)."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise UsageError(f"--db {url}: expected redis://HOST[:PORT][/DB]/CAMPAIGN")
    segments = [s for s in parts.path.split("/") if s]
    db = segments.pop(0) if segments and segments[0].isdigit() else ""
    name = segments.pop(0) if segments else "default"
    if segments or not _NAME.match(name):
        raise UsageError(f"--db {url}: the campaign name must be one path segment of letters, digits, '_.-'")
    return urlunsplit(("redis", parts.netloc, f"/{db}" if db else "", parts.query, "")), name


def _client(url: str):
    try:
        import redis
    except ImportError as exc:
        raise UsageError("--db redis://... needs the redis client: pip install -e '.[redis]'") from exc
    client_url, _ = parse_url(url)
    return redis.Redis.from_url(client_url, socket_connect_timeout=5, socket_timeout=30)


def check_redis(url: str) -> None:
    """A shared store that cannot be reached is an error before any job starts."""
    import redis

    try:
        _client(url).ping()
    except (redis.RedisError, ValueError) as exc:
        raise UsageError(f"cannot reach the example database {url}: {exc}") from None


def prefix(url: str) -> str:
    return f"iq1m:{parse_url(url)[1]}:"


def redis_example_database(url: str):
    from hypothesis.extra.redis import RedisExampleDatabase

    return RedisExampleDatabase(_client(url), key_prefix=(prefix(url) + "examples:").encode())


class RedisFailureStore(FailureStore):
    """The directory store's interface, with Redis as the shared record and OUT/failures
    as this machine's mirror."""

    def __init__(self, out: Path, url: str):
        super().__init__(out)
        self.url = url
        self.redis = _client(url)
        self.p = prefix(url)
        self._save = self.redis.register_script(_SAVE)

    def _k(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    # -- the parent ------------------------------------------------------------------------------
    def begin_campaign(self) -> None:
        """Claims are shared and live (other machines are minimising): only the local
        mirror's leftovers go."""
        self.root.mkdir(parents=True, exist_ok=True)
        for tmp in self.root.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    # -- jobs ---------------------------------------------------------------------------------------
    def is_known(self, sig_id: str) -> bool:
        return bool(self.redis.exists(self._k("claim", sig_id)))

    def claim(self, sig: Signature, owner: dict) -> bool:
        value = json.dumps(dict(owner, signature=sig.to_dict(), state="minimising"))
        return bool(self.redis.set(self._k("claim", sig.id), value, nx=True, ex=CLAIM_TTL))

    def heartbeat(self, sig: Signature) -> None:
        """Renew a claim being worked on (a dead machine's claim expires)."""
        key = self._k("claim", sig.id)
        if self.redis.get(key) != b"done":
            self.redis.expire(key, CLAIM_TTL)

    def save(self, sig: Signature, case, failure, info: dict, *, where: str, only_if_absent: bool = False) -> Path:
        path = self.path_of(sig)
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        tmp = staging / f"{sig.slug}.{id(case):x}.npz"
        from ..cases import save_case
        import dataclasses

        save_case(dataclasses.replace(case, info=dict(info)), tmp)
        data = tmp.read_bytes()
        tmp.unlink(missing_ok=True)
        first = json.dumps(info.get("first_seen") or {})
        written = self._save(keys=[self._k("failure", sig.id), self._k("failures"), self._k("claim", sig.id)],
                             args=[json.dumps(info, default=str), data, "1" if info.get("minimised") else "0",
                                   "1" if only_if_absent else "0", first, str(time.time()), sig.id])
        self._mirror(sig.id)
        return path

    def existing(self, sig_id: str) -> dict | None:
        raw = self.redis.hget(self._k("failure", sig_id), "info")
        if raw is None:
            return None
        info = json.loads(raw)
        first = self.redis.hget(self._k("failure", sig_id), "first_seen")
        if first:
            info["first_seen"] = json.loads(first)
        return info

    def _mirror(self, sig_id: str) -> bool:
        """Write the shared record of `sig_id` into OUT/failures (record + script) unless
        the mirror already holds this version."""
        h = self.redis.hgetall(self._k("failure", sig_id))
        if not h or b"case" not in h:
            return False
        info = json.loads(h[b"info"])
        if h.get(b"first_seen"):
            info["first_seen"] = json.loads(h[b"first_seen"])  # whoever saw it first, anywhere
        sig = Signature.from_dict(info["signature"])
        path = self.path_of(sig)
        stamp = h.get(b"updated", b"").decode()
        with self._lock():
            if path.exists() and self._existing_info(path).get("_updated") == stamp:
                return False
            from ..cases import atomic_write_bytes, load_case, save_case
            from ..repro import write_script

            tmp = self.root / f".{path.name}.mirror.tmp"
            atomic_write_bytes(tmp, h[b"case"])
            case = load_case(tmp)
            tmp.unlink(missing_ok=True)
            case.info = dict(info, _updated=stamp)
            failure = SimpleNamespace(kind=info.get("failure_kind", sig.kind), message=info.get("message", ""))
            write_script(path, failure, case.describe(), info.get("target_label", ""), sig.slug)
            save_case(case, path)
        return True

    def sync(self) -> int:
        """Every shared record into the mirror; returns how many were new or changed."""
        ids = sorted(i.decode() for i in self.redis.smembers(self._k("failures")))
        return sum(self._mirror(i) for i in ids)

    def records(self) -> list[dict]:
        self.sync()
        return super().records()

    # -- counters, for the merged report ---------------------------------------------------------------
    def publish_stats(self, campaign: str, job: int, stats_json: bytes) -> None:
        self.redis.hset(self._k("stats"), f"{campaign}:{job}", stats_json)

    def publish_campaign(self, campaign: str, cfg_json: str) -> None:
        self.redis.hset(self._k("campaigns"), campaign, cfg_json)

    def all_stats(self) -> list[bytes]:
        return list(self.redis.hgetall(self._k("stats")).values())

    def campaigns(self) -> dict[str, dict]:
        return {k.decode(): json.loads(v) for k, v in self.redis.hgetall(self._k("campaigns")).items()}


def open_store(cfg):
    """Where a campaign's failures live: OUT/failures, or the shared Redis store."""
    return RedisFailureStore(cfg.out, cfg.db) if cfg.db.startswith("redis://") else FailureStore(cfg.out)


def example_database(cfg):
    """Hypothesis's example database: OUT/examples, --db DIR, or the shared Redis one."""
    from hypothesis.database import DirectoryBasedExampleDatabase

    if cfg.db.startswith("redis://"):
        return redis_example_database(cfg.db)
    return DirectoryBasedExampleDatabase(str(Path(cfg.db) if cfg.db else cfg.out / "examples"))
