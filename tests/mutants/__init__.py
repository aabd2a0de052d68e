"""`make mutants`: named mutations of the safety-critical code, each applied to a scratch
copy of the tree and run against the tests that should notice (docs/testing.md)."""
