"""Validation of cohort batches: Great Expectations suites, image, mesh and PHI checks."""
