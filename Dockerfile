# MedSyn image: the app (8501) and the REST API (8000) in one container (deploy/start.sh), slim Python 3.11,
# non-root user, data and models in a volume. Serve both behind a TLS reverse proxy (deploy/nginx.conf).
# CPU:  docker build -t medsyn . && docker run -p 127.0.0.1:8501:8501 -p 127.0.0.1:8000:8000 \
#           -v medsyn-home:/home/medsyn/data medsyn
# GPU:  add --gpus all. A shared PostgreSQL store: -e MEDSYN_DATABASE_URL=postgresql://... (docs/storage.md)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MEDSYN_HOME=/home/medsyn/data

RUN useradd --create-home --uid 1000 medsyn
WORKDIR /app

# Dependencies first, so code changes do not reinstall torch.
COPY requirements.txt ./
# pyradiomics (for frd-score) compiles a C extension: a compiler only for the install, removed afterwards
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install -r requirements.txt \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

COPY --chown=medsyn:medsyn . .
RUN pip install --no-deps -e . && mkdir -p "$MEDSYN_HOME" && chown medsyn:medsyn "$MEDSYN_HOME" \
    && chmod 700 "$MEDSYN_HOME"  # patient data: the service account only (docs/security.md)

USER medsyn
VOLUME ["/home/medsyn/data"]
ENV MEDSYN_BIND=0.0.0.0
EXPOSE 8501 8000
# healthy = the app answers and the API is ready (its database open, at this MedSyn's schema)
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request as u,sys; sys.exit(0 if u.urlopen('http://localhost:8501/_stcore/health', timeout=4).read() == b'ok' and u.urlopen('http://localhost:8000/ready', timeout=4).status == 200 else 1)"

CMD ["deploy/start.sh"]
