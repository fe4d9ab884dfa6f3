"""Where a run's scalars go besides metrics.jsonl: TensorBoard (always available through tensorboardX), and
Weights & Biases or MLflow when the user installs and enables them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from visiong1.config import TrackingConfig


def scalars(metrics: dict) -> dict[str, float]:
    """The numeric entries of a metrics dict (booleans and text left out)."""
    return {key: float(value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


class Trackers:
    """Fan-out of `log(metrics, step)` to the enabled trackers; `close()` flushes them."""

    def __init__(self, config: TrackingConfig, run_dir: Path, run_id: str, run_config: dict):
        for name in ("wandb", "mlflow"):
            if getattr(config, name) and importlib.util.find_spec(name) is None:
                raise ImportError(f"tracking.{name} is on but `{name}` is not installed (pip install {name})")
        self.sinks = []
        if config.tensorboard:
            from tensorboardX import SummaryWriter

            writer = SummaryWriter(str(run_dir / "tensorboard"))
            self.sinks.append((lambda m, s: [writer.add_scalar(k, v, s) for k, v in m.items()], writer.close))
        if config.wandb:
            import wandb

            session = wandb.init(project=config.project, name=run_id, config=run_config, dir=str(run_dir))
            self.sinks.append((lambda m, s: session.log(m, step=s), session.finish))
        if config.mlflow:
            import mlflow

            mlflow.set_experiment(config.project)
            mlflow.start_run(run_name=run_id)
            self.sinks.append((lambda m, s: mlflow.log_metrics(m, step=s), mlflow.end_run))

    def log(self, metrics: dict, step: int) -> None:
        values = scalars(metrics)
        for write, _ in self.sinks:
            write(values, step)

    def close(self) -> None:
        for _, close in self.sinks:
            close()
