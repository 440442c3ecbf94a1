"""The federation file (``fed.yaml``) the admin writes and ``medsyn federated server --config`` reads.

Example (tabular; every path is relative to the file)::

    name: heart-federated          # the global model's name (a safe slug)
    engine: tabular                # tabular | imaging
    model: ctgan                   # tabular: ctgan | tvae; imaging: dcgan | stylegan2
    metadata: heart_schema.yaml    # tabular: the declared schema every site uses (kinds, bounds, categories)
    rounds: 5
    local_epochs: 1                # tabular: epochs per round at each site; imaging: local_kimg
    batch_size: 50
    strategy: fedavg               # fedavg | fedadam (adaptive) | fedtrimmedavg (robust) | fedmedian
    min_sites: 3                   # training starts when this many sites have joined
    join_timeout_s: 600
    round_timeout_s: 600           # a site that has not answered by then is left out of that round
    evaluate: true                 # without DP: every site scores the global model's rows each round
    host: 0.0.0.0                  # where the server listens (one port: Flower's HTTP/TLS API)
    port: 9092
    tls: {ca: certs/ca.crt, cert: certs/server.pem, key: certs/server.key}
    sites: certs/sites.yaml        # pseudonym -> public key, written by `medsyn federated certs --site`
    privacy:                       # optional: DP-SGD at every site (sample-level, per site)
      epsilon: 3                   # each site's total ε (a site may ask for less with --epsilon)
      max_grad_norm: 1.0
    preprocessing_epsilon: 1.0     # without DP training: ε each site spends on the shared encoding
    dp_fedavg:                     # optional: client-level DP-FedAvg (Flower's server-side clipping)
      noise_multiplier: 1.0
      clipping_norm: 5.0
    hyperparameters: {}            # model settings (e.g. embedding_dim: 64)
    imaging: {resolution: 32, class_names: [normal, pneumonia], arch: {}}

Nothing in this file is secret except the paths it names (the server key stays 0600); the sites'
tokens are never in it, only their public keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsyn_core.names import check_name

ENGINES = {"tabular": ("ctgan", "tvae"), "imaging": ("dcgan", "stylegan2")}
STRATEGIES = ("fedavg", "fedadam", "fedtrimmedavg", "fedmedian")
DEFAULT_PORT = 9092
MAX_ROUNDS = 10_000


class FederationConfigError(ValueError):
    """The federation file is wrong; the message says which setting and what to write instead."""

    value_free_message = True


@dataclass
class FederationConfig:
    """A parsed, checked federation file (paths resolved against the file's folder)."""

    name: str
    engine: str
    model: str
    rounds: int
    local_epochs: float
    batch_size: int
    strategy: str = "fedavg"
    min_sites: int = 2
    join_timeout_s: float = 600.0
    round_timeout_s: float = 600.0
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    tls: dict[str, Path] | None = None
    sites: dict[str, str] = field(default_factory=dict)  # pseudonym -> OpenSSH public key
    metadata: dict[str, Any] | None = None  # tabular: the declared schema (schema-file layout)
    privacy: dict[str, Any] | None = None
    preprocessing_epsilon: float = 1.0
    dp_fedavg: dict[str, float] | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    imaging: dict[str, Any] = field(default_factory=dict)
    server_lr: float = 0.01  # FedAdam's server learning rate (eta)
    trim_fraction: float = 0.2  # FedTrimmedAvg's beta
    seed: int = 0
    evaluate: bool = True  # without DP: each site scores the global model's rows every round
    source: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The settings that travel to the ServerApp and into the model card (JSON-safe, no paths)."""
        return {"name": self.name, "engine": self.engine, "model": self.model, "rounds": self.rounds,
                "local_epochs": self.local_epochs, "batch_size": self.batch_size, "strategy": self.strategy,
                "min_sites": self.min_sites, "join_timeout_s": self.join_timeout_s,
                "round_timeout_s": self.round_timeout_s, "metadata": self.metadata, "privacy": self.privacy,
                "preprocessing_epsilon": self.preprocessing_epsilon, "dp_fedavg": self.dp_fedavg,
                "hyperparameters": self.hyperparameters, "imaging": self.imaging,
                "server_lr": self.server_lr, "trim_fraction": self.trim_fraction, "seed": self.seed,
                "evaluate": self.evaluate, "sites": sorted(self.sites)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FederationConfig:
        """Rebuild from :meth:`to_dict` (the ServerApp's copy: no TLS paths, site keys by name only)."""
        sites = {s: "" for s in data.get("sites", [])}
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "sites"}
        return cls(**known, sites=sites)


def _number(data: dict, key: str, default, kind=float, lo=None, hi=None):
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
        raise FederationConfigError(f"'{key}' must be a {'whole ' if kind is int else ''}number "
                                    f"(got {value!r}).")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise FederationConfigError(f"'{key}' must lie between {lo} and {hi} (got {value}).")
    return kind(value)


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise FederationConfigError(f"No such file: {path}.") from None
    except yaml.YAMLError as exc:
        raise FederationConfigError(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]}).") from None


def read_sites(path: str | Path) -> dict[str, str]:
    """pseudonym -> OpenSSH public key from a sites file (``sites: {site-a: "ecdsa-sha2-nistp384 …"}``)."""
    data = _read_yaml(Path(path))
    sites = data.get("sites") if isinstance(data, dict) else None
    if not isinstance(sites, dict):
        raise FederationConfigError(f"{Path(path).name}: expected a 'sites' mapping of pseudonym to public "
                                    "key (write it with `medsyn federated certs --site NAME`).")
    return parse_sites(sites)


def parse_sites(sites: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name, key in sites.items():
        check_name(str(name), what="site pseudonym")
        if not isinstance(key, str) or not key.startswith("ecdsa-sha2-nistp"):
            raise FederationConfigError(f"Site {name!r}: expected an OpenSSH EC public key "
                                        "('ecdsa-sha2-nistp384 …').")
        out[str(name)] = key.strip()
    return out


def load_config(path: str | Path) -> FederationConfig:
    """Read and check a federation file; every error names the setting and the fix."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise FederationConfigError(f"{path.name}: expected a mapping of settings (see docs/federated.md).")
    base = path.resolve().parent
    unknown = set(data) - set(FederationConfig.__dataclass_fields__) - {"sites"}
    if unknown:
        raise FederationConfigError(f"Unknown setting(s) in {path.name}: {', '.join(sorted(unknown))}.")
    engine = str(data.get("engine", "tabular"))
    if engine not in ENGINES:
        raise FederationConfigError(f"'engine' must be one of {', '.join(ENGINES)} (got {engine!r}).")
    model = str(data.get("model", ENGINES[engine][0]))
    if model not in ENGINES[engine]:
        raise FederationConfigError(f"'model' for engine {engine} must be one of "
                                    f"{', '.join(ENGINES[engine])} (got {model!r}).")
    strategy = str(data.get("strategy", "fedavg")).lower()
    if strategy not in STRATEGIES:
        raise FederationConfigError(f"'strategy' must be one of {', '.join(STRATEGIES)} (got {strategy!r}).")
    name = check_name(str(data.get("name", f"federated-{model}")))
    tls = data.get("tls")
    if tls is not None:
        if not isinstance(tls, dict) or set(tls) != {"ca", "cert", "key"}:
            raise FederationConfigError("'tls' needs exactly ca, cert and key (the files `medsyn federated "
                                        "certs` writes: ca.crt, server.pem, server.key).")
        tls = {k: (base / str(v)).resolve() for k, v in tls.items()}
        missing = [f"{k}: {v.name}" for k, v in tls.items() if not v.is_file()]
        if missing:
            raise FederationConfigError(f"TLS file(s) not found: {', '.join(missing)}.")
    sites_value = data.get("sites")
    if isinstance(sites_value, str):
        sites = read_sites(base / sites_value)
    elif isinstance(sites_value, dict):
        sites = parse_sites(sites_value)
    else:
        raise FederationConfigError("'sites' must name a sites file (written by `medsyn federated certs "
                                    "--site NAME`) or map each site's pseudonym to its public key.")
    if not sites:
        raise FederationConfigError("'sites' lists no site: the server would accept nobody.")
    metadata = data.get("metadata")
    if engine == "tabular":
        if metadata is None:
            raise FederationConfigError("A tabular federation needs 'metadata': the declared schema every "
                                        "site uses (write it with `medsyn tabular schema DATA --out "
                                        "schema.yaml` on public or synthetic data and review it).")
        if isinstance(metadata, str):
            from medsyn_tabular.data.schema import load_override_file

            metadata = load_override_file(base / metadata)
        if not isinstance(metadata, dict) or not isinstance(metadata.get("columns"), dict):
            raise FederationConfigError("'metadata' must be a schema file with a 'columns' section.")
    privacy = data.get("privacy")
    if privacy is not None:
        if not isinstance(privacy, dict) or "epsilon" not in privacy:
            raise FederationConfigError("'privacy' needs at least 'epsilon' (each site's total ε).")
        _number(privacy, "epsilon", None, lo=0.01, hi=100)
    dp_fedavg = data.get("dp_fedavg")
    if dp_fedavg is not None:
        if not isinstance(dp_fedavg, dict):
            raise FederationConfigError("'dp_fedavg' needs noise_multiplier and clipping_norm.")
        dp_fedavg = {"noise_multiplier": _number(dp_fedavg, "noise_multiplier", None, lo=0.01, hi=100),
                     "clipping_norm": _number(dp_fedavg, "clipping_norm", None, lo=1e-6, hi=1e6)}
        if strategy != "fedavg":
            raise FederationConfigError("'dp_fedavg' wraps FedAvg (Flower's server-side fixed clipping): "
                                        "use strategy: fedavg with it.")
    imaging = dict(data.get("imaging") or {})
    if engine == "imaging":
        if not isinstance(imaging.get("class_names"), list) or not imaging["class_names"]:
            raise FederationConfigError("An imaging federation needs imaging.class_names: the public list "
                                        "of class names every site's images use (e.g. [normal, "
                                        "pneumonia]).")
        imaging.setdefault("resolution", 32)
    min_sites = _number(data, "min_sites", min(2, len(sites)), int, 1, len(sites))
    return FederationConfig(
        name=name, engine=engine, model=model, rounds=_number(data, "rounds", 3, int, 1, MAX_ROUNDS),
        local_epochs=_number(data, "local_epochs", 1, float, 0.001, 10_000),
        batch_size=_number(data, "batch_size", 50 if engine == "tabular" else 16, int, 2, 100_000),
        strategy=strategy, min_sites=min_sites,
        join_timeout_s=_number(data, "join_timeout_s", 600, float, 1, 7 * 86400),
        round_timeout_s=_number(data, "round_timeout_s", 600, float, 1, 7 * 86400),
        host=str(data.get("host", "0.0.0.0")), port=_number(data, "port", DEFAULT_PORT, int, 1, 65535),
        tls=tls, sites=sites, metadata=metadata, privacy=privacy,
        preprocessing_epsilon=_number(data, "preprocessing_epsilon", 1.0, float, 0.01, 100),
        dp_fedavg=dp_fedavg, hyperparameters=dict(data.get("hyperparameters") or {}), imaging=imaging,
        server_lr=_number(data, "server_lr", 0.01, float, 1e-6, 10),
        trim_fraction=_number(data, "trim_fraction", 0.2, float, 0.0, 0.49),
        seed=_number(data, "seed", 0, int, 0, 2**31 - 1), evaluate=bool(data.get("evaluate", True)),
        source=path.resolve())
