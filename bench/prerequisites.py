"""What the benchmark needs on the machine before it starts anything: wrk, PostgreSQL and Redis.
Each is installed or started when it is missing and this script may (root, Debian), or the run
stops with what to do."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time

import asyncpg  # type: ignore[import-untyped]

from common import log


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk is missing: apt-get install -y wrk")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
            subprocess.run(install, env=env, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit("wrk is not installed: run `apt-get install -y wrk` (Debian package), then retry.")


def ensure_services(admin_url: str, redis_url: str) -> None:
    """Start PostgreSQL / Redis as /work/shared/SERVICES.md says, if they are down and we can."""
    import redis

    def postgres_up() -> bool:
        async def probe() -> None:
            connection = await asyncpg.connect(admin_url, timeout=3)
            await connection.close()

        try:
            asyncio.run(probe())
            return True
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False

    def redis_up() -> bool:
        try:
            return bool(redis.Redis.from_url(redis_url, socket_timeout=2).ping())
        except (redis.RedisError, OSError):
            return False

    root = os.geteuid() == 0
    if not postgres_up():
        clusters = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if root and clusters:
            log("PostgreSQL is down: starting it")
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", clusters[-1], "main", "start"],
                check=False,
            )
            time.sleep(2)
        if not postgres_up():
            sys.exit(f"PostgreSQL is not reachable at {admin_url} (see /work/shared/SERVICES.md)")
    if not redis_up():
        if root and shutil.which("redis-server"):
            log("Redis is down: starting it")
            os.makedirs("/var/lib/redis", exist_ok=True)
            os.makedirs("/var/log/redis", exist_ok=True)
            subprocess.run(
                "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
                "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
                shell=True,
                check=False,
            )
            time.sleep(1)
        if not redis_up():
            sys.exit(f"Redis is not reachable at {redis_url} (see /work/shared/SERVICES.md)")
