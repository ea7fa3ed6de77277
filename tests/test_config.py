from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from stemcodec.config import ConfigError, load_config, to_dict


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)


@dataclass
class Cfg:
    out: str = "runs/x"
    steps: int = 10
    ema: bool = False
    mode: Literal["stems", "mix"] = "stems"
    slots: list[str] = field(default_factory=lambda: ["drums"])
    optim: Optim = field(default_factory=Optim)


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\noptim:\n  lr: 0.01\n")
    cfg = load_config(Cfg, path, ["optim.lr=3e-4", "slots=drums,bass", "ema=true"])
    assert cfg.steps == 20 and cfg.optim.lr == 3e-4 and cfg.ema is True
    assert cfg.slots == ["drums", "bass"] and cfg.optim.betas == (0.9, 0.95)
    assert to_dict(cfg)["optim"]["betas"] == [0.9, 0.95]


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'"),
        ("steps=many", "steps must be an integer"),
        ("mode=joint", "mode='joint' is not one of stems, mix"),
        ("ema=3", "ema must be true or false"),
        ("justakey", "must look like key=value"),
    ],
)
def test_bad_keys_and_values_name_the_key(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        load_config(Cfg, None, [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Cfg, bad)


def test_every_shipped_config_loads_into_its_trainer():
    """A typo in configs/*.yaml is caught here, not an hour into a training run."""
    from stemcodec.training.config import (
        CodecTrainConfig,
        TrainConfig,
        check_codec_config,
        check_train_config,
    )
    root = Path(__file__).resolve().parents[1]
    seen = 0
    for path in sorted((root / "configs").glob("*.yaml")):
        if path.name.startswith("codec-"):  # the codec trainer's configs
            cfg = load_config(CodecTrainConfig, path, ["out=/nonexistent/run"])
            check_codec_config(cfg)
        else:
            cfg = load_config(TrainConfig, path)
            check_train_config(cfg)
            cfg.model.validate()
        seen += 1
    assert seen >= 8


def test_the_readme_trains_on_the_cache_it_prepares():
    """The README's training commands prepare the folk-band cache where configs/mini.yaml (and
    the baselines trained like it) read it, so `--config configs/mini.yaml` without
    data.cache=, and the resume with out= alone, find it."""
    import re

    from stemcodec.training.config import TrainConfig
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    caches = {load_config(TrainConfig, root / "configs" / name).data.cache
              for name in ("mini.yaml", "baseline-mix.yaml", "baseline-no-slot-attention.yaml")}
    assert len(caches) == 1
    prepared = re.findall(r"stemcodec\.prepare \S*folk-band --out (\S+)", readme)
    given = re.findall(r"data\.cache=(\S+)", readme)
    assert prepared and given and set(prepared) | set(given) == caches
