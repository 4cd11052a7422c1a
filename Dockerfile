# One image for the agent (aios-agent) and the aggregator (aios-aggregator).
# Build:  docker build -t aios/node-telemetry:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY aggregator ./aggregator
COPY proto ./proto
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# No NVML here: the NVIDIA container runtime mounts the host driver's
# libnvidia-ml.so.1 into the agent's container (NVIDIA_DRIVER_CAPABILITIES=utility).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl
# The add-ons' kustomize bases, so `aios-aggregator addons ...` also works from inside the pod.
COPY deploy/addons /opt/aios/addons
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 AIOS_ADDONS_DIR=/opt/aios/addons
USER 65534:65534
ENTRYPOINT []
CMD ["aios-agent", "run"]
