# syntax=docker/dockerfile:1
# One image for the training Job (k8s/), the Ray head and the Ray GPU workers (k8s/ray/).
#
#   docker build -t us-docker.pkg.dev/PROJECT_ID/covidct/covidct-gan:0.1.0 .
#
# CUDA and cuDNN come from the NVIDIA wheels that `tensorflow[and-cuda]` pins, so the base is plain
# Python; only the GPU driver comes from the node (GKE mounts it under /usr/local/nvidia).
# Everything is installed at build time: pods never run pip.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}

# The pins of pyproject.toml (tests/test_k8s.py checks that they agree, and that RAY_VERSION is the
# rayVersion of the KubeRay manifests). Installed in their own layer, before the project's code is
# copied, so a code change does not download ~3 GB of wheels again.
ARG TENSORFLOW_VERSION=2.21.0
ARG RAY_VERSION=2.60.0

# PATH/LD_LIBRARY_PATH: the venv first, then the driver GKE mounts into GPU containers.
# TMPDIR: the scratch folder (run and dataset copies, Ray's session folder); world-writable here,
# an emptyDir in the pods, whose root file system is read-only. HOME points there too, for the few
# libraries that write dot-folders (Keras, Ray).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/nvidia/bin:$PATH \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib \
    TMPDIR=/tmp \
    HOME=/tmp

# wget: KubeRay's health probes and its RayJob submitter call it (bash, which KubeRay wraps
# `ray start` in, is already in the base image).
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/*

# requirements.lock pins every package (`make lock`), so two builds of one version are the same.
COPY requirements.lock /src/requirements.lock
RUN python -m venv /opt/venv \
 && pip install -c /src/requirements.lock \
      "tensorflow[and-cuda]==${TENSORFLOW_VERSION}" \
      "ray[default,train,tune]==${RAY_VERSION}"

# The project itself, from pyproject.toml, as a regular (non-editable) install; the sources are
# removed afterwards, so what runs is exactly the installed package.
COPY pyproject.toml README.md /src/
COPY job /src/job
COPY tfds_covidct /src/tfds_covidct
COPY tune /src/tune
COPY bench /src/bench
RUN pip install -c /src/requirements.lock /src \
 && rm -rf /src \
 && covidct --help > /dev/null

# A fixed numeric non-root user, so Kubernetes' runAsNonRoot can verify it from the image alone.
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /tmp --shell /bin/bash covidct
USER 1000:1000
WORKDIR /tmp

ENTRYPOINT ["covidct"]
CMD ["--help"]
