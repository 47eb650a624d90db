# ModelForge on an NVIDIA GPU: docker build -t modelforge . && docker run --gpus all -p 7860:7860 -v modelforge:/data modelforge

# GGUF export needs llama-cpp-python, which PyPI has as source only: compile its wheel here, so the compiler and cmake
# stay out of the image. GGML_NATIVE=OFF: built for any machine the image runs on, not only this build machine's CPU.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS gguf-build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
COPY requirements-gguf.txt .
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF" /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels -r requirements-gguf.txt

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    MODELFORGE_HOME=/data/modelforge \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860

RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
# The compiled wheel is mounted for this step only; pip fetches its pure-Python dependencies.
RUN --mount=type=bind,from=gguf-build,source=/wheels,target=/wheels pip install --no-cache-dir /wheels/*.whl

COPY app.py pyproject.toml README.md ./
COPY modelforge ./modelforge
COPY assets ./assets

VOLUME /data
EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
