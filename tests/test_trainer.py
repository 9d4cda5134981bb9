"""EmbSumTrainer on a tiny toy SequentialRecommender and the converted synthetic MIND: gradient accumulation, LR
schedule, unscale-before-clip, exact resume, non-finite loss, named loss parts, best-model reload."""
import logging
import math
import os
import re
import shutil

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.dataloader import TrainDataLoader
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType, init_seed
from torch import nn

from recbole_embsum.model.losses import LossParts
from recbole_embsum.trainer import EmbSumTrainer, NonFiniteLossError

from conftest import MIND_YAML


class ToySeq(SequentialRecommender):
    """Mean of the history's item embeddings, projected; NCE over the click and its impression negatives."""

    input_type = InputType.POINTWISE
    accepts_empty_history = True  # a user without history gets the zero vector
    loss_names = ("nce", "aux")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.item_embedding = nn.Embedding(self.n_items, 8, padding_idx=0)
        self.proj = nn.Linear(8, 8)
        self.nan_at_call = None  # make the aux loss NaN on this call of calculate_loss (1-based)
        self.calls = 0

    def user(self, interaction):
        seq = interaction[self.ITEM_SEQ]  # [B, L]
        mask = (seq != 0).float().unsqueeze(-1)  # [B, L, 1]
        mean = (self.item_embedding(seq) * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # [B, 8]
        return self.proj(mean)

    def calculate_loss(self, interaction):
        self.calls += 1
        user = self.user(interaction)
        candidates = torch.cat([interaction[self.ITEM_ID][:, None], interaction["neg_items"][:, :4]], 1)  # [B, 5]
        scores = (user[:, None] * self.item_embedding(candidates)).sum(-1)
        scores = scores.masked_fill(candidates == 0, -1e4)
        nce = nn.functional.cross_entropy(scores, torch.zeros_like(candidates[:, 0]))
        aux = 0.01 * user.pow(2).mean()
        if self.calls == self.nan_at_call:
            aux = aux * float("nan")
        return nce, aux

    def predict(self, interaction):
        return torch.sigmoid((self.user(interaction) * self.item_embedding(interaction[self.ITEM_ID])).sum(-1))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's Trainer creates log_tensorboard/ in the working directory


def make_config(mind_dataset, tmp_path, **overrides):
    data_path, name = mind_dataset
    values = {
        "data_path": data_path,
        "checkpoint_dir": str(tmp_path / "saved"),
        "metrics": ["AUC"],
        "valid_metric": "AUC",
        "epochs": 1,
        "train_batch_size": 8,
        "eval_batch_size": 256,
        "learner": "sgd",
        "learning_rate": 0.5,
        "shuffle": False,
        "seed": 0,
        "reproducibility": True,
        "show_progress": False,
        "MAX_ITEM_LIST_LENGTH": 60,
        "train_neg_sample_args": None,  # negatives come from the impression (neg_items)
        "train_neg_num": None,  # all of them, in stored order: batches of any size see the same negatives
        # compat's empty-history check looks the model up by name, which a toy class passed to Config lacks
        "drop_empty_history": True,
    }
    values.update(overrides)
    return Config(model=ToySeq, dataset=name, config_file_list=[MIND_YAML], config_dict=values)


@pytest.fixture(scope="module")
def splits(mind_dataset, tmp_path_factory):
    """The converted synthetic MIND loaded once: (train dataset, valid loader, test loader)."""
    config = make_config(mind_dataset, tmp_path_factory.mktemp("splits"))
    init_seed(0, True)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    return train_data._dataset, valid_data, test_data


def train_loader(config, train_dataset, rows):
    """The first ``rows`` training rows in file order, batched by ``config['train_batch_size']``."""
    subset = train_dataset.copy(train_dataset.inter_feat[:rows])
    return TrainDataLoader(config, subset, None, shuffle=False)


def make_trainer(config, train_dataset):
    init_seed(0, True)
    model = ToySeq(config, train_dataset)
    return EmbSumTrainer(config, model)


def params(trainer):
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


def record_step_lrs(trainer):
    """Learning rate used by each optimizer step, in order."""
    lrs = []
    step = trainer._optimizer_step

    def recording_step():
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        step()

    trainer._optimizer_step = recording_step
    return lrs


def test_four_accumulated_micro_batches_equal_one_big_batch(mind_dataset, tmp_path, splits):
    train_dataset = splits[0]
    # 40 rows: accumulated = [4 x 8 rows] + a flushed partial group [1 x 8 rows]; big = [32 rows] + [8 rows]
    small = make_config(mind_dataset, tmp_path, train_batch_size=8, grad_accum_steps=4)
    big = make_config(mind_dataset, tmp_path, train_batch_size=32, grad_accum_steps=1)
    accumulated, single = make_trainer(small, train_dataset), make_trainer(big, train_dataset)
    assert all(torch.equal(a, b) for a, b in zip(params(accumulated).values(), params(single).values()))
    start = params(single)

    accumulated._train_epoch(train_loader(small, train_dataset, 40), 0)
    single._train_epoch(train_loader(big, train_dataset, 40), 0)

    assert accumulated.global_step == single.global_step == 2
    for name, value in params(accumulated).items():
        assert not torch.equal(value, start[name]), name  # the steps did something
        torch.testing.assert_close(value, params(single)[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch, expected", [(8, 16), (32, 4), (48, 3), (128, 1), (300, 1)])
def test_auto_accumulation_keeps_the_effective_batch_and_says_so(mind_dataset, tmp_path, splits, caplog, batch,
                                                                 expected):
    config = make_config(mind_dataset, tmp_path, train_batch_size=batch, grad_accum_steps="auto")
    with caplog.at_level(logging.INFO):
        trainer = make_trainer(config, splits[0])
    assert trainer.grad_accum_steps == expected
    lines = [record.getMessage() for record in caplog.records if "effective batch" in record.getMessage()]
    assert lines == [f"optimizer step every {expected} micro-batch(es) of {batch} rows: effective batch "
                     f"{expected * batch} (grad_accum_steps: auto = ceil(effective_batch_size 128 / "
                     f"train_batch_size {batch}))"]


def test_auto_accumulation_aims_at_effective_batch_size_and_an_integer_wins(mind_dataset, tmp_path, splits):
    aimed = make_config(mind_dataset, tmp_path, train_batch_size=8, grad_accum_steps="auto", effective_batch_size=40)
    assert make_trainer(aimed, splits[0]).grad_accum_steps == 5
    explicit = make_config(mind_dataset, tmp_path, train_batch_size=8, grad_accum_steps=3, effective_batch_size=40)
    assert make_trainer(explicit, splits[0]).grad_accum_steps == 3
    # auto with 8 x 5 = 40 rows per step steps exactly as grad_accum_steps: 5 does (same parameters after an epoch)
    by_hand = make_config(mind_dataset, tmp_path, train_batch_size=8, grad_accum_steps=5)
    auto_trainer, hand_trainer = make_trainer(aimed, splits[0]), make_trainer(by_hand, splits[0])
    auto_trainer._train_epoch(train_loader(aimed, splits[0], 80), 0)
    hand_trainer._train_epoch(train_loader(by_hand, splits[0], 80), 0)
    assert auto_trainer.global_step == hand_trainer.global_step == 2
    for name, value in params(auto_trainer).items():
        assert torch.equal(value, params(hand_trainer)[name]), name


def test_embsum_defaults_to_auto_accumulation_toward_the_papers_batch():
    import yaml

    from conftest import MODEL_YAML

    with open(MODEL_YAML, encoding="utf-8") as handle:
        defaults = yaml.safe_load(handle)
    assert (defaults["grad_accum_steps"], defaults["effective_batch_size"]) == ("auto", 128)


def test_linear_schedule_warms_up_then_decays_per_optimizer_step(mind_dataset, tmp_path, splits):
    train_dataset = splits[0]
    # 40 rows / batch 8 / accumulate 1 = 5 optimizer steps per epoch, 2 epochs = 10 steps, 2 of them warm-up
    config = make_config(mind_dataset, tmp_path, epochs=2, lr_scheduler="linear", warmup_steps=2, learning_rate=0.1)
    trainer = make_trainer(config, train_dataset)
    lrs = record_step_lrs(trainer)
    loader = train_loader(config, train_dataset, 40)
    trainer._train_epoch(loader, 0)
    trainer._train_epoch(loader, 1)
    expected = [0.0, 0.05, 0.1, 0.0875, 0.075, 0.0625, 0.05, 0.0375, 0.025, 0.0125]
    assert lrs == pytest.approx(expected)


def test_cosine_schedule_with_warmup_ratio_and_accumulation(mind_dataset, tmp_path, splits):
    train_dataset = splits[0]
    # 40 rows / batch 8 = 5 micro-batches -> ceil(5 / 2) = 3 optimizer steps per epoch, 4 epochs = 12 steps;
    # warmup_ratio 0.25 -> 3 warm-up steps
    config = make_config(
        mind_dataset, tmp_path, epochs=4, lr_scheduler="cosine", warmup_ratio=0.25, grad_accum_steps=2,
        learning_rate=1.0,
    )
    trainer = make_trainer(config, train_dataset)
    lrs = record_step_lrs(trainer)
    loader = train_loader(config, train_dataset, 40)
    for epoch in range(4):
        trainer._train_epoch(loader, epoch)
    warmup = [0.0, 1 / 3, 2 / 3]
    decay = [0.5 * (1 + math.cos(math.pi * k / 9)) for k in range(9)]
    assert lrs == pytest.approx(warmup + decay)


def test_clipping_sees_unscaled_gradients_under_fp16_loss_scaling(mind_dataset, tmp_path, splits):
    train_dataset = splits[0]
    config = make_config(
        mind_dataset, tmp_path, enable_amp=True, amp_dtype="float16", clip_grad_norm={"max_norm": 1e-3},
        learning_rate=1.0,
    )
    trainer = make_trainer(config, train_dataset)
    assert trainer.scaler.is_enabled()
    # a scale that cannot overflow this toy's fp16 activations' gradients, so the first step is not skipped
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = params(trainer)
    trainer._train_epoch(train_loader(config, train_dataset, 8), 0)  # one SGD step of lr 1
    assert trainer.scaler.get_scale() == 1024.0  # no overflow: the step was applied
    update = torch.cat([(params(trainer)[n] - before[n]).flatten() for n in before])
    # clipped true gradient: |update| = lr * max_norm. Clipping the scaled gradient would give 1e-3 / 1024.
    assert update.norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_bf16_needs_no_scaler(mind_dataset, tmp_path, splits):
    config = make_config(mind_dataset, tmp_path, enable_amp=True, enable_scaler=True)
    trainer = make_trainer(config, splits[0])
    assert trainer.amp_dtype == torch.bfloat16 and not trainer.scaler.is_enabled()
    trainer._train_epoch(train_loader(config, splits[0], 16), 0, show_progress=True)  # with a tqdm bar
    assert trainer.global_step == 2


def test_resume_continues_from_the_saved_epoch_with_optimizer_and_scheduler_state(mind_dataset, tmp_path, splits):
    train_dataset = splits[0]
    options = dict(
        epochs=2, learner="adamw", weight_decay=0.1, learning_rate=0.05, lr_scheduler="linear", warmup_steps=2,
        grad_accum_steps=2,
    )
    straight_config = make_config(mind_dataset, tmp_path / "a", **options)
    straight = make_trainer(straight_config, train_dataset)
    after_first_epoch = str(tmp_path / "after_epoch0.pth")
    save = straight._save_checkpoint

    def save_and_keep_first(epoch, **kwargs):
        save(epoch, **kwargs)
        if epoch == 0:
            shutil.copy(straight.saved_model_file, after_first_epoch)

    straight._save_checkpoint = save_and_keep_first
    loader = train_loader(straight_config, train_dataset, 40)  # 5 micro-batches -> 3 steps per epoch
    straight.fit(loader, valid_data=None, saved=True)

    resumed_config = make_config(mind_dataset, tmp_path / "b", **options)
    resumed = make_trainer(resumed_config, train_dataset)
    resumed.resume_checkpoint(after_first_epoch)
    assert resumed.start_epoch == 1 and resumed.global_step == 3
    lrs = record_step_lrs(resumed)
    resumed.fit(loader, valid_data=None, saved=True)

    # steps 3..5 of a 6-step linear schedule after 2 warm-up steps: lr * (6 - k) / 4
    assert lrs == pytest.approx([0.05 * 3 / 4, 0.05 * 2 / 4, 0.05 * 1 / 4])
    assert resumed.global_step == straight.global_step == 6
    assert resumed.scheduler.state_dict()["last_epoch"] == straight.scheduler.state_dict()["last_epoch"] == 6
    for name, value in params(straight).items():
        torch.testing.assert_close(params(resumed)[name], value, rtol=1e-6, atol=1e-7)
    straight_state, resumed_state = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    for key, state in straight_state["state"].items():
        torch.testing.assert_close(resumed_state["state"][key]["exp_avg_sq"], state["exp_avg_sq"])
    # AdamW decays matrices only
    assert [g["weight_decay"] for g in straight.optimizer.param_groups] == [0.1, 0.0]


def test_nan_loss_stops_training_names_step_and_part_and_writes_no_checkpoint(mind_dataset, tmp_path, splits):
    config = make_config(mind_dataset, tmp_path)
    trainer = make_trainer(config, splits[0])
    trainer.model.nan_at_call = 3
    with pytest.raises(NonFiniteLossError) as error:
        trainer.fit(train_loader(config, splits[0], 40), valid_data=None, saved=True)
    message = str(error.value)
    assert "loss part 'aux' is nan" in message
    assert "epoch 0, batch 3/5 (optimizer step 3)" in message
    assert trainer.global_step == 2  # the NaN step was not applied
    assert os.listdir(config["checkpoint_dir"]) == []


def test_loss_parts_are_logged_by_name(mind_dataset, tmp_path, splits, caplog):
    config = make_config(mind_dataset, tmp_path)
    trainer = make_trainer(config, splits[0])
    caplog.set_level("INFO")
    nce, aux = trainer._train_epoch(train_loader(config, splits[0], 16), 0)
    assert nce > 1.0 and 0 < aux < 0.01  # 5 candidates: NCE starts near ln 5
    trainer.fit(train_loader(config, splits[0], 16), valid_data=None, saved=False)
    (line,) = [r.getMessage() for r in caplog.records if "training" in r.getMessage()]
    assert "nce" in line and "aux" in line and "train_loss1" not in line

    del ToySeq.loss_names  # a model without names gets RecBole-style numbered parts
    try:
        assert trainer.loss_names(2) == ("loss1", "loss2")
    finally:
        ToySeq.loss_names = ("nce", "aux")


class WeightedToySeq(ToySeq):
    """ToySeq whose aux part enters the objective weighted by 0.1 and is reported unweighted (as EmbSum's L_sum)."""

    def calculate_loss(self, interaction):
        nce, aux = super().calculate_loss(interaction)
        return LossParts((nce, 0.1 * aux), logged=(nce.detach(), aux.detach()))


def test_weighted_parts_are_logged_unweighted_and_the_total_is_the_objective(mind_dataset, tmp_path, splits):
    config = make_config(mind_dataset, tmp_path)
    init_seed(0, True)
    weighted = EmbSumTrainer(config, WeightedToySeq(config, splits[0]))
    losses = weighted._train_epoch(train_loader(config, splits[0], 16), 0)
    assert isinstance(losses, LossParts) and losses.logged[0] == pytest.approx(losses[0])
    assert losses.logged[1] == pytest.approx(10 * losses[1]) and losses.logged[1] > 0  # aux reported unweighted
    line = re.sub(r"\x1b\[[0-9;]*m", "", weighted._generate_train_loss_output(0, 0.0, 1.0, losses))  # no colours
    assert f"train loss: {losses[0] + losses[1]:.4f}" in line  # the objective, lambda applied
    assert f"aux: {losses.logged[1]:.4f}" in line and f"aux: {losses[1]:.4f}" not in line  # the unscaled part


def test_evaluate_reloads_the_best_checkpoint(mind_dataset, tmp_path, splits):
    train_dataset, valid_data, test_data = splits
    config = make_config(mind_dataset, tmp_path, epochs=1, learner="adamw", learning_rate=0.01)
    trainer = make_trainer(config, train_dataset)
    trainer.fit(train_loader(config, train_dataset, 64), valid_data=valid_data, saved=True)
    trained = trainer.evaluate(test_data, load_best_model=False)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(torch.randn_like(p))
    assert trainer.evaluate(test_data, load_best_model=False) != trained
    assert trainer.evaluate(test_data, load_best_model=True) == trained
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)  # plain data: no code runs
    assert {"scheduler", "scaler", "global_step"} <= set(checkpoint)
    assert not [name for name in os.listdir(config["checkpoint_dir"]) if name.startswith(".")]  # no temporary files
