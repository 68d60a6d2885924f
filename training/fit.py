"""Train the emotion classifier on FER2013: python -m training.fit --data PATH --out weights/

Modelled on torchvision's references/classification/train.py: get_args_parser, main,
train_one_epoch, evaluate. A checkpoint (model, EMA, optimizer, scheduler, epoch, args,
history) is written every epoch; --resume continues from it. The best epoch on PublicTest
(EMA or raw weights) is exported with its config to --out; each TTA mode is scored on it at the end.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from emobatch.faces.emotion.classifier import predict_probs
from emobatch.config import TTA_MODES
from emobatch.faces.device import amp_dtype, autocast, select_device
from emobatch.faces.emotion.models import build_model
from emobatch.faces.emotion.preprocess import DEFAULT_MEAN, DEFAULT_STD, resize_crops, to_tensor
from emobatch.faces.emotion.weights import DEFAULT_NAME, load_weights, save_weights
from .augment import mixup, random_affine, random_erasing
from .checkpoint import Trainee, resume, save_checkpoint, write_history
from . import posed as posed_data
from .data import (Split, TrainingError, add_align_argument, add_label_mix_arguments,
                   add_votes_argument, exit_on_error, load_fer, resolve_labels,
                   training_targets, votes_arg)
from .distill import cached_teacher_probs, distill_loss, provenance, soften
from .scoring import nll, vote_metrics
from .progress import Advance, steps

log = logging.getLogger("training.fit")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train emobatch's FER2013 emotion classifier.")
    p.add_argument("--data", required=True, help="FER2013 folder layout or fer2013.csv")
    p.add_argument("--out", default="weights/", help="directory (or .pt path) for the best weights")
    p.add_argument("--ckpt-dir", default=None, help="checkpoints + history (default: runs/<arch>)")
    p.add_argument("--arch", default="vgg_m")
    p.add_argument("--input-size", type=int, default=48, metavar="PX",
                   help="the network's input side: FER2013's 48-pixel faces are resized to it, "
                        "posed photos and the product's crops are aligned at it")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05, help="peak SGD learning rate")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--rotate", type=float, default=10.0, help="max rotation, degrees")
    p.add_argument("--shift", type=float, default=0.1, help="max shift, fraction of the side")
    p.add_argument("--scale", type=float, nargs=2, default=(0.9, 1.1), metavar=("LO", "HI"),
                   help="random scale range")
    p.add_argument("--erase-p", type=float, default=0.5)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="mixup with lam ~ Beta(ALPHA, ALPHA) on every batch (0: off)")
    p.add_argument("--distill", nargs="+", default=None, metavar="WEIGHTS.pt",
                   help="teachers (earlier weights; several = an ensemble) whose averaged TTA "
                        "probabilities on the clean training images are soft targets")
    p.add_argument("--distill-alpha", type=float, default=0.5,
                   help="weight of the distillation loss (the labels' loss gets 1 - alpha)")
    p.add_argument("--distill-temp", type=float, default=2.0, help="distillation temperature")
    p.add_argument("--labels", default="auto", choices=["auto", "ferplus", "fer2013"],
                   help="what to learn: ferplus = the distribution of FER+'s ten votes per face "
                        "(soft cross-entropy; models are selected on PublicTest's FER+ "
                        "majority), fer2013 = FER2013's one label per face (auto: ferplus "
                        "where --votes finds votes, else fer2013)")
    add_votes_argument(p)
    add_label_mix_arguments(p)
    posed_data.add_posed_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add_align_argument(p)
    p.add_argument("--tta", nargs="+", default=list(TTA_MODES[1:]), choices=TTA_MODES[1:],
                   help="TTA modes weighed against none after the last epoch (tencrop: slow)")
    p.add_argument("--limit", type=int, default=0,
                   help="use only N training and at most N PublicTest images (quick runs)")
    p.add_argument("--init", default=None, metavar="WEIGHTS.pt",
                   help="start from these weights (same --arch) with a fresh schedule: a warm "
                        "restart that continues an earlier run, e.g. one trained on another day")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from CKPT (default: <ckpt-dir>/checkpoint.pt)")
    return p


def cosine_lambda(total_steps: int, warmup_steps: int):
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def ema_avg_fn(decay: float):
    """EMA with warm-up: the effective decay min(decay, (1+n)/(10+n)) lets the average follow
    the fast-changing early weights instead of staying anchored to the random init."""
    def avg(avg_p: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1 + int(n)) / (10 + int(n)))
        return avg_p * d + p.detach() * (1 - d)
    return avg


def batch_loss(logits: torch.Tensor, y: torch.Tensor, y_b: torch.Tensor, lam: float,
               soft: torch.Tensor | None, args) -> torch.Tensor:
    """Label-smoothed cross-entropy of logits (N, C) against targets y: labels (N,) or
    label distributions (N, C), blended by mixup (lam * y + (1 - lam) * y_b); with
    --distill, mixed with the loss against the softened teacher targets soft (N, C) by
    --distill-alpha."""
    loss = lam * F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
    if lam < 1.0:
        loss = loss + (1 - lam) * F.cross_entropy(logits, y_b, label_smoothing=args.label_smoothing)
    if soft is not None:
        loss = ((1 - args.distill_alpha) * loss
                + args.distill_alpha * distill_loss(logits, soft, args.distill_temp))
    return loss


def train_one_epoch(model: nn.Module, ema: AveragedModel, opt: torch.optim.Optimizer,
                    sched, images: np.ndarray, labels: np.ndarray, args, epoch: int,
                    device: torch.device, dtype, soft: np.ndarray | None = None,
                    advance: Advance | None = None) -> dict[str, float]:
    """One pass over the shuffled training set. Order, augmentation and dropout are seeded by
    seed and epoch, so a run resumed from a checkpoint repeats an uninterrupted one exactly.
    labels: classes (N,) int64, or label distributions (N, C) float32 (train accuracy then
    counts the distribution's top class). soft: teachers' probabilities (N, C) for
    --distill, else None. advance(1) is called after each batch (progress)."""
    model.train()
    torch.manual_seed(args.seed * 1000 + epoch)  # dropout draws from the global generator
    g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
    order = torch.randperm(len(labels), generator=g)
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    q_all = None if soft is None else soften(torch.from_numpy(soft), args.distill_temp)
    tot_loss = tot_correct = tot_n = 0.0
    for i in range(0, len(order), args.batch_size):
        idx = order[i:i + args.batch_size]
        if len(idx) < 2:
            continue
        x = to_tensor(x_all[idx], DEFAULT_MEAN, DEFAULT_STD)
        x = random_affine(x, max_deg=args.rotate, max_shift=args.shift,
                          scale=tuple(args.scale), generator=g)
        x = random_erasing(x, p=args.erase_p, generator=g)
        perm, lam = None, 1.0
        if args.mixup > 0:
            x, perm, lam = mixup(x, args.mixup, generator=g)
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        y = y_all[idx].to(device)
        y_b = y if perm is None else y[perm.to(device)]
        q = None
        if q_all is not None:
            q = q_all[idx].to(device)
            q = q if perm is None else lam * q + (1 - lam) * q[perm.to(device)]
        with autocast(device, dtype):
            logits = model(x)
        loss = batch_loss(logits.float(), y, y_b, lam, q, args)
        if lam < 0.5:
            y = y_b  # train accuracy counts the dominant image's label
        if y.ndim == 2:
            y = y.argmax(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.update_parameters(model)
        tot_loss += loss.item() * len(idx)
        tot_correct += (logits.argmax(1) == y).sum().item()
        tot_n += len(idx)
        if advance is not None:
            advance(1)
    tot_n = max(tot_n, 1)
    return {"train_loss": tot_loss / tot_n, "train_acc": tot_correct / tot_n}


def evaluate(model: nn.Module, split: Split, device, dtype, tta: str = "none",
             description: str = "PublicTest", size: int | None = None) -> dict[str, float]:
    """NLL and accuracy against the split's FER2013 labels; where it has FER+ votes, also
    fp_acc (accuracy against the FER+ majority) and vote_ce (cross-entropy against the
    vote distribution). Shows its progress as `description`. size: the model's input side,
    where the split's images have another."""
    with steps(description + ("" if tta == "none" else f", {tta} TTA"), len(split), "faces") as adv:
        probs = predict_probs(model, split.images, device, dtype, 512, tta, on_batch=adv,
                              size=size)
    out = {"loss": nll(probs, split.labels), "acc": float((probs.argmax(1) == split.labels).mean())}
    if split.votes is not None:
        v = vote_metrics(probs, split.votes)
        out |= {"fp_acc": v["majority"]["accuracy"], "vote_ce": v["vote_cross_entropy"]}
    return out


def _out_path(out: str) -> Path:
    p = Path(out)
    return p if p.suffix == ".pt" else p / DEFAULT_NAME


def load_init(model: nn.Module, path: str, arch: str) -> dict:
    """Copy the weights of an earlier run into model; returns their provenance for the config."""
    loaded = load_weights(path)
    if loaded.config.get("arch") != arch:
        raise TrainingError(f"--init {path}: architecture {loaded.config.get('arch')!r}, "
                         f"but --arch is {arch!r}")
    model.load_state_dict(loaded.model.state_dict())
    return provenance(loaded, path)


SELECT_ON = {"fer2013": "acc", "ferplus": "fp_acc"}
"""The PublicTest score (an evaluate() key) that picks the best epoch and TTA, per --labels."""
_METRIC_NAMES = {"acc": "publictest_acc", "fp_acc": "publictest_ferplus_acc"}


def _config_metrics(scores: dict[str, float], suffix: str = "") -> dict[str, float]:
    return {_METRIC_NAMES[k] + suffix: v for k, v in scores.items() if k in _METRIC_NAMES}


def export(model: nn.Module, args, command: str, epoch: int, scores: dict[str, float],
           labels: str, is_ema: bool, out_path: Path, init: dict | None = None,
           distill: dict | None = None, posed: dict | None = None) -> None:
    """Write the best model so far with its config; TTA is decided once, at the end.
    scores: its PublicTest evaluate() figures; posed: training.posed.config.s record, if any."""
    trained_on = ("FER2013 Training, FER+ vote distributions"
                  + (f" mixed with FER2013's labels ({args.label_mix:g})" if args.label_mix else "")
                  if labels == "ferplus" else "FER2013 Training")
    trained_on += posed_data.trained_on(posed)
    save_weights(model, {
        "arch": args.arch, "input_size": [args.input_size] * 2, "mean": DEFAULT_MEAN,
        "std": DEFAULT_STD, "tta": "none",
        "metrics": {**_config_metrics(scores), "selected_on": _METRIC_NAMES[SELECT_ON[labels]],
                    "epoch": epoch + 1, "epochs": args.epochs, "ema": is_ema},
        "command": command, "seed": args.seed, "trained_on": trained_on, "targets": labels,
        **({"label_mix": args.label_mix} if labels == "ferplus" else {}),
        **({"label_mix_classes": list(args.label_mix_classes)}
           if labels == "ferplus" and args.label_mix_classes else {}),
        **({"init": init} if init else {}), **({"distill": distill} if distill else {}),
        **({"posed": posed} if posed else {}),
    }, out_path)
    log.info("new best %.4f (%s) -> %s", scores[SELECT_ON[labels]], "EMA" if is_ema else "raw",
             out_path)


def finalize(out_path: Path, val: Split, device, dtype, modes=TTA_MODES[1:]) -> None:
    """Score the exported best model with each of `modes` and record the best on PublicTest
    (by the score it was selected on) as its default, the cheaper on a tie (once after the
    last epoch: the modes' 16 views cost eight epochs' worth of PublicTest evaluation)."""
    loaded = load_weights(out_path)
    config = {k: v for k, v in loaded.config.items() if k not in ("labels", "sha256")}
    key = config["metrics"].get("selected_on", "publictest_acc")
    best, config["tta"] = config["metrics"][key], "none"
    model = loaded.model.to(device)
    for mode in (m for m in TTA_MODES[1:] if m in modes):  # in order of cost
        scores = _config_metrics(evaluate(model, val, device, dtype, tta=mode,
                                          size=loaded.weights_config.input_size), f"_{mode}_tta")
        config["metrics"] |= scores
        log.info("PublicTest with %s TTA: %s", mode,
                 " ".join(f"{k}={v:.4f}" for k, v in scores.items()))
        if scores[f"{key}_{mode}_tta"] > best:
            best, config["tta"] = scores[f"{key}_{mode}_tta"], mode
    save_weights(loaded.model, config, out_path)
    log.info("tta=%s (PublicTest %s %.4f) -> %s", config["tta"], key, best, out_path)


def load_splits(args: argparse.Namespace) -> tuple[Split, Split, np.ndarray, str]:
    """Training and PublicTest (--limit applied to both: PublicTest's 3,589 faces, scored
    every epoch and with each TTA mode, took minutes of a quick run), Training's targets
    (n, 7), and --labels resolved."""
    data = load_fer(args.data, align=args.align, votes=votes_arg(args.votes))
    train, val = data["Training"], data["PublicTest"]
    if len(train) == 0 or len(val) == 0:
        raise TrainingError(f"{args.data}: need Training and PublicTest images "
                         f"(found {len(train)} and {len(val)})")
    if args.limit:
        rng = np.random.default_rng(args.seed)
        train = train.subset(rng.permutation(len(train))[:args.limit])
        val = val.subset(np.sort(rng.permutation(len(val))[:args.limit]))
    labels = resolve_labels(args, train, val)
    train, targets = training_targets(labels, train, args.label_mix, args.label_mix_classes)
    if labels == "fer2013":  # scored as before: FER2013's labels only
        val = dataclasses.replace(val, votes=None)
    train, val = (dataclasses.replace(s, images=resize_crops(s.images, args.input_size))
                  for s in (train, val))
    return train, val, targets, labels


def teacher_targets(args: argparse.Namespace, train: Split, ckpt_dir: Path, device
                    ) -> tuple[np.ndarray | None, dict | None]:
    """--distill's soft targets (n, 7) and their provenance for the config; (None, None)
    without --distill."""
    if not args.distill:
        return None, None
    soft, teachers = cached_teacher_probs(args.distill, train.images, ckpt_dir, device, args.amp)
    log.info("distilling from %d teacher(s): their training accuracy %.4f",
             len(teachers), float((soft.argmax(1) == train.labels).mean()))
    return soft, {"teachers": teachers, "alpha": args.distill_alpha,
                  "temperature": args.distill_temp}


def build_training(args: argparse.Namespace, n_train: int, device) -> tuple[Trainee, dict | None]:
    """The model (--init's weights copied in), its EMA, the optimizer and the schedule; and
    --init's provenance."""
    model = build_model(args.arch, dropout=args.dropout)
    init = load_init(model, args.init, args.arch) if args.init else None
    model = model.to(device).to(memory_format=torch.channels_last)
    ema = AveragedModel(model, avg_fn=ema_avg_fn(args.ema_decay), use_buffers=True)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          weight_decay=args.wd, nesterov=True)
    steps = math.ceil(n_train / args.batch_size) * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, cosine_lambda(steps, int(args.warmup_epochs * steps / args.epochs)))
    return Trainee(model, ema, opt, sched), init


def fit_epoch(t: Trainee, data: tuple[np.ndarray, np.ndarray], val: Split,
              held: posed_data.PosedSet | None, args: argparse.Namespace, epoch: int, device,
              dtype, soft: np.ndarray | None) -> tuple[dict, dict, dict]:
    """One epoch of training on data (images, targets), then PublicTest scored (and the
    held-out posed performers, if any): the history row, the raw and EMA scores."""
    t0 = time.time()
    row = {"epoch": epoch + 1, "lr": t.opt.param_groups[0]["lr"]}
    with steps(f"epoch {epoch + 1}/{args.epochs}", -(-len(data[1]) // args.batch_size)) as adv:
        row |= train_one_epoch(t.model, t.ema, t.opt, t.sched, *data, args, epoch, device,
                               dtype, soft, adv)
    raw, avg = (evaluate(m, val, device, dtype, description=f"PublicTest ({name})")
                for m, name in ((t.model, "raw"), (t.ema.module, "EMA")))
    if held is not None:
        raw["posed_top"], avg["posed_top"] = (posed_data.agreement(m, held, device, dtype,
                                                                   args.input_size)
                                              for m in (t.model, t.ema.module))
    row |= {f"val_{k}": v for k, v in raw.items()} | {f"ema_val_{k}": v for k, v in avg.items()}
    row["seconds"] = time.time() - t0
    return row, raw, avg


@exit_on_error
def main(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = select_device(args.device)
    dtype = amp_dtype(device, args.amp)
    ckpt_dir = Path(args.ckpt_dir or f"runs/{args.arch}")
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    train, val, targets, labels = load_splits(args)
    select = SELECT_ON[labels]
    log.info("train %d (%s targets), PublicTest %d, device %s, autocast %s", len(train), labels,
             len(val), device, dtype)
    soft, distill = teacher_targets(args, train, ckpt_dir, device)
    posed, held = posed_data.split_posed(args, labels, ckpt_dir)
    t, init = build_training(args, len(train) + len(posed or ()) * args.posed_copies, device)
    start, history, best = 0, [], -1.0
    ckpt_path = ckpt_dir / "checkpoint.pt"
    if args.resume:
        src = ckpt_path if args.resume == "auto" else Path(args.resume)
        start, history, best = resume(src, t, labels, device) or (start, history, best)

    command = f"python -m {__package__}.fit " + shlex.join(argv if argv is not None else sys.argv[1:])
    out_path = _out_path(args.out)
    for epoch in range(start, args.epochs):
        data = posed_data.epoch_data(train.images, targets, posed, args, epoch)
        row, raw, avg = fit_epoch(t, data, val, held, args, epoch, device, dtype,
                                  posed_data.soft_targets(soft, data[1]))
        history.append(row)
        log.info("epoch %d/%d %s", epoch + 1, args.epochs,
                 " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
        use_ema = avg[select] >= raw[select]
        scores = avg if use_ema else raw
        if scores[select] > best:
            best = scores[select]
            export(t.ema.module if use_ema else t.model, args, command, epoch, scores, labels,
                   use_ema, out_path, init, distill, posed_data.config(args, posed))
        save_checkpoint(ckpt_path, t, epoch, vars(args), history, best, labels)
        write_history(ckpt_dir / "history.csv", history)
    if out_path.is_file():
        finalize(out_path, val, device, dtype, tuple(args.tta))
    return {"best_publictest_acc": best, "selected_on": _METRIC_NAMES[select],
            "weights": str(out_path), "history": history}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
