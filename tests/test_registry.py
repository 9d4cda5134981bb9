"""Registration with RecBole and the layering of packaged defaults beneath the user's configuration."""
import subprocess
import sys
import zipfile

import recbole.evaluator.register as metric_register
import recbole.trainer
import recbole.trainer.trainer
import recbole.utils
import yaml
from recbole.config import Config
from recbole.utils import ModelType

import recbole_embsum
from recbole_embsum import registry
from recbole_embsum.evaluation.collector import ImpressionCollector


def test_recbole_finds_model_trainer_metrics_and_collector_by_name():
    assert recbole.utils.get_model("EmbSum") is recbole_embsum.EmbSum
    assert recbole.utils.get_trainer(ModelType.SEQUENTIAL, "EmbSum") is recbole_embsum.EmbSumTrainer
    assert recbole.utils.get_trainer(ModelType.SEQUENTIAL, "SASRec") is recbole.trainer.Trainer
    for name in ("imp_auc", "imp_mrr", "imp_ndcg@5", "imp_ndcg@10"):
        assert name in metric_register.metrics_dict
        assert metric_register.metric_types[name] is not None
    assert recbole.trainer.trainer.Collector is ImpressionCollector


def _packaged(relative):
    with open(f"{registry.properties_dir()}/{relative}", encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_packaged_model_defaults_apply_only_to_embsum(tmp_path):
    defaults = _packaged("model/EmbSum.yaml")
    config = Config(model="EmbSum", dataset="mind", config_dict={"data_path": str(tmp_path)})
    assert config["upe_codes"] == defaults["upe_codes"] == 32
    assert config["cpe_codes"] == defaults["cpe_codes"] == 4
    assert config["summary_weight"] == 0.05
    baseline = Config(model="BPR", dataset="mind", config_dict={"data_path": str(tmp_path)})
    assert "upe_codes" not in baseline.final_config_dict


def test_packaged_dataset_defaults_apply_to_every_model_and_beat_recbole_quick_start_yaml(tmp_path):
    mind = _packaged("dataset/mind.yaml")
    for model in ("EmbSum", "SASRec", "BPR"):
        config = Config(model=model, dataset="mind", config_dict={"data_path": str(tmp_path)})
        assert config["benchmark_filename"] == mind["benchmark_filename"]
        assert config["alias_of_item_id"] == mind["alias_of_item_id"]
        # RecBole's sequential.yaml says mode: full; the packaged dataset yaml (labeled) must win for SASRec too.
        assert config["eval_args"]["mode"] == {"valid": mind["eval_args"]["mode"], "test": mind["eval_args"]["mode"]}
    goodreads = _packaged("dataset/goodreads.yaml")
    config = Config(model="EmbSum", dataset="goodreads", config_dict={"data_path": str(tmp_path)})
    assert config["train_neg_num"] == goodreads["train_neg_num"]


def test_user_yaml_beats_packaged_default_and_dict_beats_yaml_and_command_line_beats_dict(tmp_path, monkeypatch):
    user_yaml = tmp_path / "mine.yaml"
    user_yaml.write_text("upe_codes: 8\ncpe_codes: 2\nsummary_weight: 0.5\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["prog", "--summary_weight=0.25"])
    config = Config(
        model="EmbSum",
        dataset="mind",
        config_file_list=[str(user_yaml)],
        config_dict={"data_path": str(tmp_path), "cpe_codes": 3, "summary_weight": 0.1},
    )
    assert config["upe_codes"] == 8  # yaml > packaged
    assert config["cpe_codes"] == 3  # dict > yaml
    assert config["summary_weight"] == 0.25  # command line > dict


def test_non_editable_wheel_ships_the_yaml(tmp_path):
    root = registry.properties_dir().rsplit("/properties", 1)[0]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), root],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("recbole_embsum-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for relative in ("model/EmbSum.yaml", "dataset/mind.yaml", "dataset/goodreads.yaml"):
        assert f"recbole_embsum/properties/{relative}" in names
    assert "dataset_converters/mind.py" in names
    entry_points = zipfile.ZipFile(wheel).read(
        next(name for name in names if name.endswith("entry_points.txt"))
    ).decode()
    assert "run_recbole = recbole_embsum.quick_start:main" in entry_points
    assert "recbole-embsum = recbole_embsum_cli:main" in entry_points
