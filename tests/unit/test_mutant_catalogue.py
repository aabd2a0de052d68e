"""Every mutant's edit still matches the code (exactly once), so a refactor that moves a
guard rail's text fails `make test` at once, not only the next `make mutants`."""

from __future__ import annotations

from tests.mutants.__main__ import check_catalogue
from tests.mutants.catalogue import MUTANTS


def test_every_mutant_edit_occurs_exactly_once_in_todays_code() -> None:
    check_catalogue(MUTANTS)  # raises CatalogueError naming the mutant and the text
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
