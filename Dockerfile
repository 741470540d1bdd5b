# The avdd image: the scheduler, the workers and the runner of docker-compose.yml all run it.
FROM python:3.11-slim-bookworm

# ffmpeg decodes the media (the imageio-ffmpeg wheel also ships one; this one is on PATH).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/avdd
COPY pyproject.toml README.md ./
COPY pipeline pipeline
COPY detector detector
COPY manifests manifests

# The README's set-up, as it is there: a virtual environment and the project installed into it.
RUN python3 -m venv .venv && . .venv/bin/activate && pip install -e .
ENV PATH=/opt/avdd/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1

# Stages read the corpus and write stores under /data (the same path in every container).
VOLUME /data
WORKDIR /data
CMD ["avdd-data", "--help"]
