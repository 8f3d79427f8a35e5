"""One default model folder, in the per-user tastemap folder, wherever a command runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import platformdirs
import pytest
from typer.testing import CliRunner

from tastemap import paths
from tastemap.cli import app
from tastemap.errors import InputError, ModelPackageError

runner = CliRunner()


@pytest.fixture
def clean_env(monkeypatch):
    for name in (paths.HOME_ENV, paths.MODEL_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_model_dir_is_in_the_user_cache_folder_wherever_it_is_asked(clean_env, tmp_path):
    found = []
    for folder in ("a", "b/c"):
        (tmp_path / folder).mkdir(parents=True)
        clean_env.chdir(tmp_path / folder)
        found.append((paths.default_model_dir(), paths.cache_dir("embeddings"), paths.models_dir()))
    assert found[0] == found[1]
    model_dir, embeddings, models = found[0]
    home = Path(platformdirs.user_cache_dir("tastemap", appauthor=False))
    assert model_dir == home / "models" / "all-MiniLM-L6-v2" and model_dir.is_absolute()
    assert embeddings == home / "embeddings" and models == home / "models"
    assert tmp_path not in model_dir.parents


def test_environment_variables_move_the_home_and_the_model(clean_env, tmp_path):
    clean_env.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    assert paths.default_model_dir() == tmp_path / "home" / "models" / "all-MiniLM-L6-v2"
    assert paths.cache_dir("bench") == tmp_path / "home" / "bench"
    clean_env.setenv(paths.MODEL_DIR_ENV, str(tmp_path / "mine"))
    assert paths.default_model_dir() == tmp_path / "mine"
    assert paths.models_dir() == tmp_path / "home" / "models"
    clean_env.chdir(tmp_path)
    clean_env.setenv(paths.MODEL_DIR_ENV, "relative/pkg")  # taken from where the command starts, made absolute
    assert paths.default_model_dir() == tmp_path / "relative" / "pkg"
    clean_env.setenv(paths.MODEL_DIR_ENV, "")
    assert paths.default_model_dir() == tmp_path / "home" / "models" / "all-MiniLM-L6-v2"
    with pytest.raises(InputError, match=r"cache kind='models' is not one of \['embeddings', 'bench', 'finetuned'\]"):
        paths.cache_dir("models")


def test_a_missing_default_package_is_an_error_naming_tastemap_export(clean_env, tmp_path):
    clean_env.setenv(paths.HOME_ENV, str(tmp_path))
    with pytest.raises(ModelPackageError, match="create it with `tastemap export`"):
        paths.resolve_model_dir()
    assert paths.resolve_model_dir(tmp_path / "given") == tmp_path / "given"  # checked when loaded


def test_commands_that_can_export_export_the_default_package(clean_env, tmp_path):
    import tastemap.export

    calls = []
    clean_env.setenv(paths.HOME_ENV, str(tmp_path))
    clean_env.setattr(tastemap.export, "ensure_default_model", lambda path, variants: calls.append((path, variants)))
    assert paths.resolve_model_dir(export_missing=True, variants=("fp32",)) == paths.default_model_dir()
    assert calls == [(tmp_path / "models" / "all-MiniLM-L6-v2", ("fp32",))]


def test_embed_finds_the_same_default_package_from_any_folder(clean_env, tiny_package, tmp_path):
    pd.DataFrame({"title": ["dark star", "comedy"]}).to_csv(tmp_path / "items.csv", index=False)
    args = ["embed", str(tmp_path / "items.csv"), "--text-col", "title", "--device", "cpu", "--threads", "1"]
    clean_env.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    expected = tmp_path / "home" / "models" / "all-MiniLM-L6-v2"
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        clean_env.chdir(tmp_path / folder)
        result = runner.invoke(app, [*args, "--out", "e.npy"])
        assert result.exit_code == 2
        assert f"no model package at {expected}" in result.output and "`tastemap export`" in result.output
    clean_env.setenv(paths.MODEL_DIR_ENV, str(tiny_package))
    for folder in ("one", "two"):
        clean_env.chdir(tmp_path / folder)
        result = runner.invoke(app, [*args, "--out", "e.npy"])
        assert result.exit_code == 0, result.output
        assert (tmp_path / folder / "e.npy").is_file()


def test_export_writes_the_default_package_to_the_default_model_dir(clean_env, tmp_path):
    import tastemap.export

    written = []
    clean_env.setenv(paths.HOME_ENV, str(tmp_path))
    clean_env.chdir(tmp_path)

    def export_model(config):
        written.append(Path(config.out))
        raise InputError("stopped before exporting")

    clean_env.setattr(tastemap.export, "export_model", export_model)
    assert runner.invoke(app, ["export"]).exit_code == 2
    assert runner.invoke(app, ["export", str(tmp_path / "src" / "my-bert")]).exit_code == 2
    assert written == [tmp_path / "models" / "all-MiniLM-L6-v2", tmp_path / "models" / "my-bert"]
