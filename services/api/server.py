"""`visiong1 serve`: connect to Ray and run the app under uvicorn."""

from __future__ import annotations

import uvicorn

from visiong1.cluster import connect
from services.api.app import create_app
from visiong1.config import RunConfig


def main(config: RunConfig) -> int:
    connect(config.ray.address, config.ray.num_cpus, config.ray.namespace)
    app = create_app(config.ray.namespace, config.api.max_body_bytes)
    uvicorn.run(app, host=config.api.host, port=config.api.port)
    return 0
