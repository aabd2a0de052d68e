"""The pipeline: pipeline.yaml's schema and rules, promotion planning and execution,
promotion records."""
