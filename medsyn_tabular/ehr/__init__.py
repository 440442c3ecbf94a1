"""Longitudinal and relational EHR: a dataset of related tables (patients, their visits, and per visit
conditions, medications, observations, procedures) and a sequential generator of synthetic patients.

* :mod:`~medsyn_tabular.ehr.schema`: which table is the patient table, which holds the visits, which are
  event tables; keys, foreign keys, time columns, code columns (inferred for review, or declared in YAML);
* :mod:`~medsyn_tabular.ehr.dataset`: reading a folder of CSV/Parquet tables (Synthea, OMOP CDM subset or
  any folder with keys), and writing one in the same layout;
* :mod:`~medsyn_tabular.ehr.encoding` and :mod:`~medsyn_tabular.ehr.model`: public bins, vocabularies and
  the autoregressive network (plain PyTorch);
* :mod:`~medsyn_tabular.ehr.synthesizer`: ``EHRSynthesizer`` (fit, sample, save, load; differential
  privacy with the patient as the unit);
* :mod:`~medsyn_tabular.ehr.checks`, :mod:`~medsyn_tabular.ehr.evaluation`: referential integrity, time
  order, and the evaluation report; :mod:`~medsyn_tabular.ehr.fhir`: FHIR R4 Bundles.

See docs/ehr.md.
"""
