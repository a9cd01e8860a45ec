from dataclasses import dataclass

import pytest

from cdn.settings import ConfigError, load_config


@dataclass(frozen=True)
class Sample:
    port: int = 1
    name: str = "x"
    fast: bool = False
    regions: tuple[str, ...] = ("a",)
    keys: dict[str, str] | None = None
    ratio: float = 0.5


def test_defaults_when_nothing_is_set():
    assert load_config(Sample, prefix="T_", section="s", env={}) == Sample()


def test_precedence_file_then_env_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[s]\nport = 2\nname = "file"\nregions = ["x", "y"]\n[s.keys]\nk1 = "v1"\n')
    env = {"T_NAME": "env", "T_FAST": "yes"}
    cfg = load_config(Sample, prefix="T_", section="s", toml_path=path, env=env,
                      overrides={"port": "3", "ratio": None})
    assert cfg == Sample(port=3, name="env", fast=True, regions=("x", "y"), keys={"k1": "v1"})


def test_env_forms_of_tuples_and_dicts():
    cfg = load_config(Sample, prefix="T_", section="s",
                      env={"T_REGIONS": "us, eu ,", "T_KEYS": "a=1,b=2"})
    assert cfg.regions == ("us", "eu")
    assert cfg.keys == {"a": "1", "b": "2"}


@pytest.mark.parametrize("env, message", [
    ({"T_PORT": "eighty"}, "expected int, got 'eighty'"),
    ({"T_FAST": "maybe"}, "expected a boolean"),
    ({"T_KEYS": "novalue"}, "key=value"),
])
def test_bad_values_name_the_field_and_value(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Sample, prefix="T_", section="s", env=env)


def test_unknown_keys_in_the_file_are_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[s]\nprot = 2\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_config(Sample, prefix="T_", section="s", toml_path=path, env={})
