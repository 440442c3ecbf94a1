"""MedSyn's REST API (FastAPI, served by uvicorn: ``medsyn api``): the same engines, accounts, roles, jobs
and audit log as the app, over HTTP for pipelines and notebooks. Details and an example session:
docs/api.md. This room may import the core and the engines, never the app or Streamlit."""

API_PREFIX = "/api/v1"
