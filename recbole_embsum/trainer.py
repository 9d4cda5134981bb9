"""`EmbSumTrainer`: RecBole's `Trainer` with the training loop a T5-based recommender needs.

What it adds to `recbole.trainer.Trainer`:

* **Named loss parts.** ``calculate_loss`` may return a tuple (EmbSum: ``(L_NCE, lambda * L_sum)``, Eq. (6)); each
  part is logged under the model's ``loss_names`` (e.g. ``nce``, ``summary``) instead of RecBole's ``loss1, loss2``
  (``progress.py``). A ``LossParts`` tuple also carries the parts unweighted (``.logged``: ``(L_NCE, L_sum)``):
  those are reported per part, while the total is always the sum of the weighted parts, the objective. Reported epoch
  losses are means per micro-batch (RecBole reports sums).
* **Gradient accumulation** (``grad_accum_steps``): the optimizer steps every N micro-batches on the mean of their
  losses, and once more on the last, partial group of an epoch (weighted by its actual size). ``auto`` (EmbSum's
  default) keeps ``effective_batch_size`` rows (the paper's 128) per optimizer step whatever ``train_batch_size``
  fits in memory: N = ceil(effective_batch_size / train_batch_size); one info line gives the resulting batch.
* **Warm-up + decay** (``lr_scheduler: linear|cosine|constant``, ``warmup_steps`` or ``warmup_ratio``) through
  ``transformers.get_scheduler``, stepped once per optimizer step.
* **AdamW** (``learner: adamw``): ``weight_decay`` applies to matrices only, not to biases and layer norms.
* **Mixed precision** (``enable_amp``; ``amp_dtype: bfloat16|float16``, default bfloat16 because T5 overflows in
  fp16). A `GradScaler` exists only for float16, once per trainer, and gradients are unscaled before clipping
  (RecBole clips scaled gradients and recreates its scaler every epoch).
* **Checkpoints** (format and random states: ``checkpoint.py``) also carry the LR scheduler, the scaler and the
  optimizer-step count; ``resume_checkpoint`` (or the ``resume`` option) restores them so a resumed run continues
  exactly; saving is atomic; files are read with ``torch.load(weights_only=True)``.
* **Non-finite loss**: training stops with `NonFiniteLossError` naming the epoch, batch, optimizer step and loss part,
  before the bad step's backward pass, so no checkpoint of a broken model is written.
* **Data parallel**: RecBole's DDP hooks (``set_reduce_hook``/``sync_grad_loss``) are kept; micro-batches
  inside an accumulation group skip the gradient all-reduce (``DistributedDataParallel.no_sync``); logged losses are
  averaged over ranks; only rank 0 writes checkpoints, and the others wait for the write. The rest of the DDP path
  (gloo on CPU, the DDP wrapper, evaluation over all ranks' rows, one checkpoint name) is `distributed.install()`.
"""
import contextlib
import math

import torch
from recbole.trainer import Trainer
from torch.nn.utils import clip_grad_norm_

from recbole_embsum import checkpoint, distributed, progress
from recbole_embsum.model.losses import LossParts

# Our names -> transformers.get_scheduler names ("constant" keeps the warm-up, which transformers' "constant" drops).
LR_SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
AMP_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class NonFiniteLossError(ValueError):
    """A loss part became NaN or infinite; training stopped before applying that step."""


def _option(config, key, default):
    """``config[key]``, or ``default`` when the key is absent or null (RecBole's Config returns None for both)."""
    value = config[key]
    return default if value is None else value


def grad_accum_steps(config):
    """``(micro-batches per optimizer step, how it was chosen)`` from ``grad_accum_steps``: an integer >= 1 as given,
    or ``auto`` = ceil(``effective_batch_size`` / ``train_batch_size``), so that lowering ``train_batch_size`` to fit
    memory keeps the effective batch (EmbSum's default: 128, the paper's). Absent or null: 1."""
    value = _option(config, "grad_accum_steps", 1)
    if isinstance(value, str) and value.strip().lower() == "auto":
        target = int(_option(config, "effective_batch_size", 128))
        batch = int(config["train_batch_size"])
        steps = max(1, math.ceil(target / batch))
        return steps, f"grad_accum_steps: auto = ceil(effective_batch_size {target} / train_batch_size {batch})"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"grad_accum_steps must be an integer >= 1 or auto, got {value!r}")
    return value, f"grad_accum_steps: {value} as set"


def _loss_parts(losses):
    """``calculate_loss`` output as a tuple of scalar tensors."""
    return tuple(losses) if isinstance(losses, (tuple, list)) else (losses,)


class EmbSumTrainer(Trainer):
    """RecBole Trainer with gradient accumulation, LR warm-up/decay, bf16 autocast and exact resume.

    Config keys (besides RecBole's ``learner``, ``learning_rate``, ``weight_decay``, ``clip_grad_norm``,
    ``enable_amp``, ``epochs``): ``grad_accum_steps`` (1 when absent; an integer or ``auto``, see
    :func:`grad_accum_steps`), ``lr_scheduler`` (constant), ``warmup_steps`` (none) or
    ``warmup_ratio`` (0.0, a fraction of all optimizer steps), ``amp_dtype`` (bfloat16).
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.grad_accum_steps, how = grad_accum_steps(config)
        self.logger.info(f"optimizer step every {self.grad_accum_steps} micro-batch(es) of {config['train_batch_size']} "
                         f"rows: effective batch {self.grad_accum_steps * config['train_batch_size']} ({how})")
        self.lr_scheduler_name = str(_option(config, "lr_scheduler", "constant")).lower()
        if self.lr_scheduler_name not in LR_SCHEDULES:
            raise ValueError(f"lr_scheduler must be one of {sorted(LR_SCHEDULES)}, got '{self.lr_scheduler_name}'")
        self.warmup_steps = config["warmup_steps"]
        self.warmup_ratio = float(_option(config, "warmup_ratio", 0.0))
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        amp_dtype = str(_option(config, "amp_dtype", "bfloat16")).lower()
        if amp_dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {sorted(AMP_DTYPES)}, got '{amp_dtype}'")
        self.amp_dtype = AMP_DTYPES[amp_dtype]
        # A loss scale is needed (and only correct) for float16; bfloat16 has float32's exponent range.
        self.enable_scaler = bool(self.enable_amp) and self.amp_dtype == torch.float16
        if config["enable_scaler"] and not self.enable_scaler:
            self.logger.warning("enable_scaler is ignored: a GradScaler is used only with enable_amp and float16")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.enable_scaler)
        self.scheduler = None  # built at the first epoch, when the number of batches is known
        self._resumed_scheduler_state = None
        self.global_step = 0  # optimizer steps taken

    # ------------------------------------------------------------------------------------------ optimizer
    def _build_optimizer(self, **kwargs):
        """RecBole's optimizers; for ``adamw`` (without explicit ``params``) no weight decay on biases/norms."""
        learner = kwargs.get("learner", self.learner)
        if learner.lower() != "adamw" or "params" in kwargs:
            return super()._build_optimizer(**kwargs)
        learning_rate = kwargs.get("learning_rate", self.learning_rate)
        weight_decay = kwargs.get("weight_decay", self.weight_decay) or 0.0
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=learning_rate)

    def _steps_per_epoch(self, train_data):
        return math.ceil(len(train_data) / self.grad_accum_steps)

    def _build_scheduler(self, train_data):
        """Warm-up then decay over all optimizer steps of the run (``epochs`` x steps per epoch)."""
        from transformers import get_scheduler

        total_steps = self._steps_per_epoch(train_data) * self.epochs
        if self.warmup_steps is not None:
            warmup = int(self.warmup_steps)
        else:
            warmup = round(self.warmup_ratio * total_steps)
        scheduler = get_scheduler(
            LR_SCHEDULES[self.lr_scheduler_name], self.optimizer, num_warmup_steps=warmup,
            num_training_steps=total_steps,
        )
        if self._resumed_scheduler_state is not None:
            scheduler.load_state_dict(self._resumed_scheduler_state)
            # load_state_dict restores the step count but leaves the optimizer at the step-0 learning rate.
            for group, lr in zip(self.optimizer.param_groups, scheduler.get_last_lr()):
                group["lr"] = lr
            self._resumed_scheduler_state = None
        return scheduler

    # ---------------------------------------------------------------------------------------------- train
    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=bool(self.enable_amp))

    def _gradient_sync(self, sync):
        """Under DDP, skip the gradient all-reduce for micro-batches that do not end an accumulation group."""
        if sync or self.config["single_spec"]:
            return contextlib.nullcontext()
        return self.distributed_model.no_sync()

    def loss_names(self, count):
        """Names of ``count`` loss parts (see `progress.loss_names`)."""
        return progress.loss_names(self.model, count)

    def _check_finite(self, values, epoch_idx, batch_idx, num_batches):
        """Raise `NonFiniteLossError` if any loss part (``values``: float tensor [parts]) is NaN or infinite."""
        finite = torch.isfinite(values)
        if bool(finite.all()):
            return
        bad = int((~finite).nonzero()[0])
        name = self.loss_names(len(values))[bad]
        raise NonFiniteLossError(
            f"Training stopped: loss part '{name}' is {values[bad].item()} at epoch {epoch_idx}, batch "
            f"{batch_idx + 1}/{num_batches} (optimizer step {self.global_step + 1}). This step was not applied and "
            f"no checkpoint was written for it. Try a lower learning_rate, clip_grad_norm, or amp_dtype: bfloat16."
        )

    def _optimizer_step(self):
        """Unscale, clip, step optimizer and scheduler, clear gradients."""
        if self.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)  # no-op without a scaler; clipping must see true gradients
            clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        """One epoch of micro-batches; returns the mean loss per micro-batch (a tuple when the loss has parts)."""
        self.model.train()
        loss_func = loss_func or self.model.calculate_loss
        if self.scheduler is None:
            self.scheduler = self._build_scheduler(train_data)
        if not self.config["single_spec"] and train_data.shuffle:
            train_data.sampler.set_epoch(epoch_idx)
        num_batches = len(train_data)
        iter_data = progress.batches(train_data, epoch_idx, show_progress)
        totals = None  # float tensor [weighted parts; logged parts]: summed over micro-batches
        self.optimizer.zero_grad(set_to_none=True)
        for batch_idx, interaction in enumerate(iter_data):
            interaction = interaction.to(self.device)
            group_start = batch_idx - batch_idx % self.grad_accum_steps
            group_size = min(self.grad_accum_steps, num_batches - group_start)
            ends_group = batch_idx == group_start + group_size - 1
            with self._gradient_sync(ends_group):
                sync_loss = 0
                if not self.config["single_spec"]:
                    self.set_reduce_hook()  # RecBole's DDP hooks: reducer armed, every parameter in the graph
                    sync_loss = self.sync_grad_loss()
                with self._autocast():
                    result = loss_func(interaction)
                parts = _loss_parts(result)
                logged = tuple(getattr(result, "logged", parts))  # unweighted parts, as reported
                values = distributed.mean_over_ranks(torch.stack([p.detach().float() for p in parts + logged]),
                                                     self.config)  # [weighted parts; logged parts]
                self._check_finite(values[len(parts):], epoch_idx, batch_idx, num_batches)
                self._check_finite(values[: len(parts)], epoch_idx, batch_idx, num_batches)
                # mean over the group's micro-batches, so a group equals one batch of group_size x batch rows
                self.scaler.scale((sum(parts) + sync_loss) / group_size).backward()
            totals = values if totals is None else totals + values
            if ends_group:
                self._optimizer_step()
            if show_progress:
                progress.show_batch(iter_data, values[: len(parts)].sum().item(), self.optimizer.param_groups[0]["lr"])
        means = (totals / num_batches).tolist()
        half = len(means) // 2
        if half == 1:
            return means[0]
        return LossParts(means[:half], logged=means[half:])  # sums to the objective; .logged reported per part

    # ------------------------------------------------------------------------------------------- logging
    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        places = self.config["loss_decimal_place"] or 4
        lr = self.optimizer.param_groups[0]["lr"]
        return progress.epoch_line(self.model, epoch_idx, e_time - s_time, losses, lr, places)

    def _add_train_loss_to_tensorboard(self, epoch_idx, losses, tag="Loss/Train"):
        progress.tensorboard_losses(self.tensorboard, self.model, epoch_idx, losses, tag)

    # ---------------------------------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """The checkpoint of `checkpoint.trainer_state` plus scheduler, scaler and step count; written atomically
        by rank 0 only (every rank takes part: the random states of all ranks are gathered)."""
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = checkpoint.trainer_state(self, epoch, getattr(self, "train_loader", None))
        if distributed.is_main_process(self.config):
            state.update({
                "scheduler": self.scheduler.state_dict() if self.scheduler else self._resumed_scheduler_state,
                "scaler": self.scaler.state_dict(),
                "global_step": self.global_step,
            })
            checkpoint.save(state, saved_model_file)
            if verbose:
                self.logger.info(checkpoint.saved_message(saved_model_file))
        distributed.barrier(self.config)  # other ranks may read the file right after (best-model reload)

    def resume_checkpoint(self, resume_file):
        """Continue training from ``resume_file``: model, optimizer, LR schedule, scaler, epoch and step counts, and
        (at the start of ``fit``) the random states. As in RecBole, later checkpoints go to ``resume_file``."""
        state = checkpoint.resume(self, resume_file)
        self._resumed_scheduler_state = state.get("scheduler")
        self.scheduler = None
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.global_step = state.get("global_step", 0)
