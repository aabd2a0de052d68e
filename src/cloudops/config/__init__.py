"""Per-account config: each account's folder <config_root>/<account>/AWS/Config/ holds its
own author.env, live.env and other files. `check` proves they are separate, `diff` shows
how two accounts differ. Config is never promoted: nothing here copies or writes it."""

from cloudops.config.check import ConfigFinding, ConfigReport, check_config
from cloudops.config.diff import ConfigDiff, diff_accounts
from cloudops.config.secrets import is_secret_key, mask

__all__ = [
    "ConfigDiff",
    "ConfigFinding",
    "ConfigReport",
    "check_config",
    "diff_accounts",
    "is_secret_key",
    "mask",
]
