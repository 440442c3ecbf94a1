"""Federated synthesis across sites with Flower: one generator trained on several sites' data without a
record leaving its site (see docs/federated.md).

Modules: :mod:`config` (the federation file), :mod:`certs` (TLS CA and server certificate), :mod:`tokens`
(site tokens → Flower node keys), :mod:`tabular_site` / :mod:`imaging_site` (what a site computes),
:mod:`apps` (Flower ServerApp and ClientApp), :mod:`model_folder` (the global model's folder and card),
:mod:`runner` (starting SuperLink and SuperNodes), :mod:`simulate` (planning on one machine).
"""
