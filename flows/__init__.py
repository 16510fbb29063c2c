"""Prefect flows: ingest, validate, train, build, export, deploy, retrain, and the pipeline."""
