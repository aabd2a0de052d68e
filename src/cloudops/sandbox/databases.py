"""The sandbox's per-account databases on its private MariaDB: one database and one user
per account, the user allowed only from the account's own loopback address, both named
and with the password the account's own config (live.env) gives. A fresh world (and
world.reset between tests) starts with none."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cloudops.config.envfile import read_env_file
from cloudops.config.tree import CONFIG_SUBDIR
from cloudops.sandbox.mariadb import MariaDbServer, provision

DATABASE_PREFIX = "commerce_"
USER_PREFIX = "ep_"


def database_name(account: str) -> str:
    return DATABASE_PREFIX + account.replace("-", "_")


def drop_account_databases(server: MariaDbServer) -> None:
    """Every account database and user the sandbox made: the next world starts empty."""
    connection = server.admin()
    try:
        cursor = connection.cursor()
        cursor.execute("SHOW DATABASES LIKE %s", (DATABASE_PREFIX + "%",))
        for (name,) in cursor.fetchall():
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute("SELECT User, Host FROM mysql.user WHERE User LIKE %s", (USER_PREFIX + "%",))
        for user, host in cursor.fetchall():
            cursor.execute("DROP USER IF EXISTS %s@%s", (user, host))
        cursor.close()
    finally:
        connection.close()


def provision_accounts(server: MariaDbServer, config_dir: Path, addresses: Mapping[str, str]) -> list[str]:
    """Each account's database and user as its live.env names them (idempotent: a user
    that exists gets the config's password anew). The accounts provisioned."""
    done: list[str] = []
    for account, address in addresses.items():
        env = config_dir / account / CONFIG_SUBDIR / "live.env"
        if not env.is_file():
            continue
        values = read_env_file(env).values()
        name, user, password = values.get("EP_DB_NAME"), values.get("EP_DB_USER"), values.get("EP_DB_PASS")
        if name and user and password is not None:
            provision(server, name, user, password, address)
            done.append(account)
    return done
