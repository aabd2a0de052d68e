"""The embedded local world used by `cloudops demo` and the tests: moto in server mode for
the AWS APIs, and one distribution registry per account behind an ECR-like front."""
