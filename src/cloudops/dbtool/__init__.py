"""A stand-in for Elastic Path's Data Population Tool (built on Liquibase): ``update-db``,
``reset-db``, ``filter-data`` and ``plan`` over Liquibase "formatted SQL" change logs, on
MariaDB / MySQL through PyMySQL.

The modules of this package are ALSO copied verbatim into the deployment package zip, as
the flat folder ``tools/data-population-cli/lib/`` (this file included), and run there with
only the standard library and PyMySQL. So:

- nothing here imports from ``cloudops``;
- the modules import each other relatively (``from . import changelog``): the launcher
  ``tools/data-population-cli/bin/data-population`` (``cli.LAUNCHER``) loads ``lib/`` as a
  package under a name of its own, whatever the folder is called and wherever it lies.

Modules: ``changelog`` (pure: parse change logs, checksums, the plan), ``database``
(MariaDB: the DATABASECHANGELOG tables, the lock, update, reset), ``cli`` (the command
line the deployment package runs, and the files it ships).
"""
