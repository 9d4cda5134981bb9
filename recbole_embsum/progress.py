"""What a training run shows while it runs: the batch progress bar, the epoch's loss line and TensorBoard scalars.

A model whose ``calculate_loss`` returns a tuple names its parts with a ``loss_names`` class attribute (EmbSum:
``("nce", "summary")``); parts of a model without matching names are ``loss1, loss2, ...`` as in RecBole. Losses
are means per micro-batch. Losses given as ``LossParts`` (model/losses.py) show their unweighted ``logged`` values
per part (EmbSum: L_NCE and the unscaled L_sum) and the weighted sum, the objective, as the total.
"""
from recbole.utils import set_color
from tqdm import tqdm


def loss_names(model, count):
    """Names of ``count`` loss parts: ``model.loss_names`` when it has ``count`` of them, else loss1, loss2, ..."""
    names = getattr(model, "loss_names", None)
    if names is not None and len(names) == count:
        return tuple(names)
    return tuple(f"loss{i + 1}" for i in range(count))


def batches(train_data, epoch_idx, show_progress):
    """``train_data`` itself, or wrapped in a tqdm bar (RecBole's look) when ``show_progress``."""
    if not show_progress:
        return train_data
    return tqdm(train_data, total=len(train_data), ncols=100, desc=set_color(f"Train {epoch_idx:>5}", "pink"))


def show_batch(bar, loss, lr):
    """Put the batch's total loss and learning rate on the bar (no-op without one)."""
    if isinstance(bar, tqdm):
        bar.set_postfix_str(f"loss={loss:.4f} lr={lr:.2e}")


def epoch_line(model, epoch_idx, seconds, losses, lr, places=4):
    """``epoch N training [time: ..., train loss: total (nce: ..., summary: ...), lr: ...]`` for the log."""
    output = (set_color("epoch %d training", "green") + " [" + set_color("time", "blue") + ": %.2fs, ") % (
        epoch_idx, seconds)
    if isinstance(losses, tuple):
        shown = getattr(losses, "logged", losses)  # unweighted parts; the total is the weighted sum
        named = ", ".join(set_color(f"{name}", "blue") + f": {value:.{places}f}"
                          for name, value in zip(loss_names(model, len(shown)), shown))
        output += set_color("train loss", "blue") + f": {sum(losses):.{places}f} ({named})"
    else:
        output += set_color("train loss", "blue") + f": {losses:.{places}f}"
    return output + ", " + set_color("lr", "blue") + f": {lr:.3e}]"


def tensorboard_losses(writer, model, epoch_idx, losses, tag="Loss/Train"):
    """One scalar per named loss part (or one for a single loss) at ``epoch_idx``."""
    if isinstance(losses, tuple):
        shown = getattr(losses, "logged", losses)
        for name, loss in zip(loss_names(model, len(shown)), shown):
            writer.add_scalar(f"{tag}/{name}", loss, epoch_idx)
    else:
        writer.add_scalar(tag, losses, epoch_idx)
