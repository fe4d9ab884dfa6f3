"""`visiong1 reward serve`: the reward service under uvicorn. The bearer token comes from the environment variable
named by `--token-env` (default VISIONG1_REWARD_TOKEN); unset means no auth (bind to localhost then)."""

from __future__ import annotations

import os

import uvicorn

from services.reward.app import create_reward_app
from visiong1.config import RunConfig


def main(config: RunConfig, token_env: str = "VISIONG1_REWARD_TOKEN") -> int:
    app = create_reward_app(config.reward, token=os.environ.get(token_env) or None,
                            max_body_bytes=config.api.max_body_bytes)
    uvicorn.run(app, host=config.api.host, port=config.api.port)
    return 0
