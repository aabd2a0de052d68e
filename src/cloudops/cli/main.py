"""The `cloudops` command. Each command binds flags to a library call; errors become one
line on stderr and a documented exit code (cli/exit_codes.py)."""

from __future__ import annotations

import click

from cloudops import __version__
from cloudops.cli.commands import copy as copy_cmd
from cloudops.cli.commands import history as history_cmd
from cloudops.cli.commands import init as init_cmd
from cloudops.cli.commands import package as package_cmd
from cloudops.cli.commands import promote as promote_cmd
from cloudops.cli.commands import sandbox as sandbox_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cloudops")
def cli() -> None:
    """Elastic Path CloudOps multi-account pipeline: promote images by digest and
    deployment packages between AWS accounts, and prove the setup follows best practice.

    Exit codes: 0 done; 1 operation failed; 2 bad usage or input; 3 refused by a guard
    rail; 4 findings (check/audit). --json prints one JSON document on stdout; human output
    and progress go to stderr.
    """


cli.add_command(copy_cmd.copy)
cli.add_command(init_cmd.init)
cli.add_command(promote_cmd.promote)
cli.add_command(package_cmd.package)
cli.add_command(history_cmd.history)
cli.add_command(sandbox_cmd.sandbox)
cli.add_command(sandbox_cmd.demo)


def main() -> None:
    cli(prog_name="cloudops")


if __name__ == "__main__":
    main()
