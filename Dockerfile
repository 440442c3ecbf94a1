# MedSyn app image: slim Python 3.11, non-root user, data and models in a volume.
# CPU:  docker build -t medsyn . && docker run -p 8501:8501 -v medsyn-home:/home/medsyn/data medsyn
# GPU:  docker run --gpus all -p 8501:8501 -v medsyn-home:/home/medsyn/data medsyn
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
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4).read() == b'ok' else 1)"

CMD ["streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0"]
