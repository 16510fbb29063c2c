"""Validation of cohort batches: Great Expectations suites, image, mesh and PHI checks.

- :mod:`validation.tables`: GX suites for the harmonised subjects table (types, units by
  range, unique ids, categories, missingness per dataset).
- :mod:`validation.phi`: the PHI guard for tables (names, dates, addresses, phones, free text).
- :mod:`validation.images`: NIfTI/DICOM checks, label maps against images in world RAS mm,
  DICOM de-identification.
- :mod:`validation.meshes`: meshes and point sets (finite, mm vs metres, watertight).
- :mod:`validation.batch`: scan a batch folder, run every check, collect a
  :class:`validation.report.CheckReport` of :class:`dh.errors.Problem` findings.
"""
