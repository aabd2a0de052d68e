"""cloudops: Elastic Path CloudOps' multi-account AWS deployment pipeline.

Layers, bottom to top (lower layers never import higher ones; see docs/architecture.md):
``refs`` and ``oci`` (pure) -> ``registry`` -> ``copy`` -> ``aws`` -> ``pipeline`` ->
features -> ``cli``; ``sandbox`` is the embedded local world used by the demo and tests.
"""

__version__ = "0.1.0"
