import subprocess
import sys
from pathlib import Path

import pytest

from visiong1.cli import RUNNERS, _load_runner, build_parser, config_path
from visiong1.config import load_config

COMMANDS = ["demo", "ablate", "serve", "config", "build-model", "reward", "export", "data", "report"]


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([Path(sys.executable).parent / "visiong1", *args], capture_output=True, text=True)


@pytest.mark.parametrize("command", [None, *COMMANDS, "reward serve"])
def test_help_for_each_command(command):
    result = run_cli(*(command.split() if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: visiong1" in result.stdout


def test_every_command_is_listed_and_runners_resolve():
    listed = build_parser().format_help()
    assert all(command in listed for command in COMMANDS)
    assert all(callable(_load_runner(command)) for command in RUNNERS)
    assert "serve" in build_parser().parse_args(["reward", "serve"]).reward_command


def test_bad_override_exits_2_naming_the_field():
    result = run_cli("config", "rollout.temperature=0")
    assert result.returncode == 2
    assert "rollout.temperature: Input should be greater than 0" in result.stderr


def test_config_prints_resolved_json():
    result = run_cli("config", "-c", str(Path(__file__).parents[1] / "configs" / "demo.yaml"), "round.steps=9")
    assert result.returncode == 0 and '"steps": 9' in result.stdout


def test_demo_and_ablate_default_to_the_eight_domain_method_demo():
    for command in ("demo", "ablate"):
        path = config_path(build_parser().parse_args([command]))
        config = load_config(path)
        assert Path(path).name == "demo_8domains.yaml"
        assert len(config.data.domains) == 8 and config.round.rounds == 3
    chosen = str(Path(__file__).parents[1] / "configs" / "demo.yaml")
    assert config_path(build_parser().parse_args(["demo", "-c", chosen])) == chosen
    assert config_path(build_parser().parse_args(["config"])) is None  # built-in defaults: the counting demo
