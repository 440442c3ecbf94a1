"""``medsyn imaging train`` and ``medsyn imaging sample``: train image generators and sample them.

``train`` writes the EMA generator folder to ``--out`` (see
:mod:`medsyn_imaging.training.generator_store`) and keeps its checkpoint, log and latest sample grid in a
work folder (default ``$MEDSYN_HOME/runs/<name>/``), from which ``--resume`` continues exactly where it
stopped.
``sample`` exports through the imaging I/O writers (``medsyn_imaging.io.export.export_images``).
Heavy imports (torch, MONAI) happen inside the handlers so ``medsyn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

from medsyn_cli.main import UserError

FORMATS = ("png", "dicom", "nifti")


def register(subparsers) -> None:
    """Add the ``imaging`` command group (``train``, ``sample``) to the ``medsyn`` CLI."""
    imaging = subparsers.add_parser("imaging",
                                    help="imaging: train and sample generators, classifier and evaluation")
    sub = imaging.add_subparsers(dest="imaging_command", metavar="COMMAND", required=True)
    from medsyn_cli.imaging_3d import add_commands as add_3d_commands
    from medsyn_cli.imaging_evaluate import add_commands

    add_commands(sub)  # classifier, evaluate
    add_3d_commands(sub)  # train-3d, sample-3d, evaluate-3d

    train = sub.add_parser(
        "train", help="train a StyleGAN2 (or DCGAN baseline) image generator",
        description="Train a class-conditional image generator. DATA is a bundled MedMNIST name "
                    "(pneumoniamnist, breastmnist), a MedMNIST-style .npz, or a folder with one "
                    "sub-folder of PNG or DICOM images per class. 28x28 images are edge-padded to 32x32.",
    )
    train.add_argument("data", metavar="DATA")
    train.add_argument("--model", choices=("stylegan2", "dcgan"), default="stylegan2")
    train.add_argument("--resolution", type=int, default=32, help="generator resolution: 32, 64, 128, 256")
    train.add_argument("--kimg", type=float, default=100.0,
                       help="training length in thousands of real images shown (default 100)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True, help="folder for the trained generator (must not exist)")
    train.add_argument("--name", default=None,
                       help="model name in the store and of the work folder (default: the --out folder's "
                            "name); letters, digits, '-', '_', '.'")
    train.add_argument("--replace", action="store_true",
                       help="replace the model already registered under this name (audited)")
    train.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    train.add_argument("--lr", type=float, default=None,
                       help="Adam learning rate (default 0.0025 for stylegan2, 0.0002 for dcgan)")
    train.add_argument("--r1-gamma", type=float, default=None,
                       help="R1 weight (default: 0.0002 * resolution^2 / batch)")
    train.add_argument("--mixing-prob", type=float, default=0.9, help="style mixing probability (stylegan2)")
    train.add_argument("--diffaugment", default="color,translation,cutout",
                       help="DiffAugment policy: comma list of color, translation, cutout, or 'none'")
    train.add_argument("--channel-base", type=int, default=None,
                       help="stylegan2 width: channels at resolution r = min(base / r, max) (default 4096)")
    train.add_argument("--channel-max", type=int, default=None, help="stylegan2 maximum width (default 256)")
    train.add_argument("--split", default="train", help="MedMNIST split to train on (default train)")
    train.add_argument("--channels", type=int, choices=(1, 3), default=None,
                       help="PNG folders: 1 (grayscale) or 3 (RGB); default from the images")
    train.add_argument("--window", default=None,
                       help="DICOM folders: CT window preset (default soft tissue) or 'percentile' (X-ray, "
                            "MR: the default for them)")
    train.add_argument("--checkpoint-kimg", type=float, default=5.0,
                       help="checkpoint every this many kimg (default 5)")
    train.add_argument("--report-kimg", type=float, default=1.0,
                       help="print progress every this many kimg (default 1)")
    train.add_argument("--work-dir", default=None,
                       help="checkpoint/log folder (default $MEDSYN_HOME/runs/<name>)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the checkpoint in the work folder (same data); --kimg may "
                            "be raised to train longer, or set to what was done to just save the model")
    train.add_argument("--no-register", action="store_true", help="do not record the model in the store")
    dp = train.add_argument_group(
        "differential privacy", "DP-SGD on the discriminator (Opacus); σ is calibrated before training "
        "and ε is read back from the accountant. Turns off minibatch stddev, R1 and mixed precision; DP "
        "runs cannot be resumed.")
    dp.add_argument("--epsilon", type=float, default=None, help="total privacy budget ε (e.g. 1 to 10)")
    dp.add_argument("--preset", choices=("strict", "balanced", "exploratory", "off"), default=None,
                    help="strict ε=1, balanced ε=3, exploratory ε=10, off (instead of --epsilon)")
    dp.add_argument("--delta", type=float, default=None,
                    help="δ (default min(1e-5, 1/(10 n)); must be below 1/n)")
    dp.add_argument("--clip", type=float, default=1.0, help="per-sample gradient clipping norm (default 1)")
    train.set_defaults(func=cmd_train)

    sample = sub.add_parser(
        "sample", help="generate synthetic images from a trained generator and export them",
        description="MODEL is a generator folder or a model name (see --list); 'demo' is the bundled "
                    "PneumoniaMNIST generator.",
    )
    sample.add_argument("model", metavar="MODEL", nargs="?", default=None)
    sample.add_argument("-n", type=int, default=16, help="number of images (default 16)")
    sample.add_argument("--label", default=None,
                        help="class index or name (default: cycle through all classes)")
    sample.add_argument("--truncation", type=float, default=1.0,
                        help="truncation psi in (0, 1]: lower = more typical, less varied (default 1)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--format", choices=FORMATS, default="png")
    sample.add_argument("--out", default=None, help="output folder (or file) for the exported images")
    sample.add_argument("--grid", default=None, help="also write a preview grid PNG to this path")
    sample.add_argument("--list", action="store_true", help="list the available generators and exit")
    sample.set_defaults(func=cmd_sample)


# -- train ----------------------------------------------------------------------------------------------
def _canonical_train_command(args: argparse.Namespace) -> str:
    """The full command line, every training option explicit (recorded in the model card)."""
    parts = ["medsyn", "imaging", "train", args.data, "--model", args.model,
             "--resolution", str(args.resolution), "--kimg", f"{args.kimg:g}", "--seed", str(args.seed),
             "--out", args.out, "--batch", str(args.batch)]
    for flag, value in (("--lr", args.lr), ("--r1-gamma", args.r1_gamma),
                        ("--channel-base", args.channel_base), ("--channel-max", args.channel_max),
                        ("--channels", args.channels), ("--window", getattr(args, "window", None))):
        if value is not None:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    parts += ["--mixing-prob", f"{args.mixing_prob:g}", "--diffaugment", args.diffaugment,
              "--split", args.split, "--checkpoint-kimg", f"{args.checkpoint_kimg:g}"]
    if getattr(args, "dp_epsilon", None) is not None:
        parts += ["--epsilon", f"{args.dp_epsilon:g}", "--clip", f"{args.clip:g}"]
        if args.delta is not None:
            parts += ["--delta", f"{args.delta:g}"]
    if args.name:
        parts += ["--name", args.name]
    if args.no_register:
        parts.append("--no-register")
    if getattr(args, "replace", False):
        parts.append("--replace")
    if args.resume:
        parts.append("--resume")
    return " ".join(shlex.quote(p) for p in parts)


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def cmd_train(args: argparse.Namespace) -> int:
    from medsyn_core import model_store, names
    from medsyn_core.files import atomic_write_text
    from medsyn_core.privacy import PrivacyBudget
    from medsyn_imaging.io.image_grid import save_grid_png
    from medsyn_imaging.training.gan_training import GANTrainer, TrainConfig
    from medsyn_imaging.training.generator_store import save_generator
    from medsyn_imaging.training.training_data import load_training_images

    out = Path(args.out)
    if out.exists():
        raise UserError(f"{out} already exists; choose a new --out folder (trained models are not "
                        "overwritten).")
    # validate ε/preset now (δ against 1/n once the images are loaded); None = DP off
    budget = PrivacyBudget.create(10**12, args.epsilon, None, args.preset)
    args.dp_epsilon = budget.epsilon if budget is not None else None
    if args.dp_epsilon is None and (args.delta is not None or args.clip != 1.0):
        raise UserError("--delta and --clip apply to differentially private training; add --epsilon or "
                        "--preset.")
    if args.dp_epsilon is not None:
        if args.resume:
            raise UserError("Differentially private runs cannot be resumed (the privacy accountant is not "
                            "checkpointed); start a new run without --resume.")
        if args.r1_gamma is not None:
            raise UserError("--r1-gamma cannot be combined with --epsilon/--preset: R1 is turned off under "
                            "differential privacy.")
    name = args.name or out.name
    names.check_name(name)  # before anything is created: it names the store entry and the work folder
    if not args.no_register:  # a taken name fails now, not after hours of training
        model_store.ensure_model_name_free(name, replace=args.replace)
    work = Path(args.work_dir) if args.work_dir else names.run_dir(name)
    checkpoint = work / "checkpoint.pt"
    if checkpoint.exists() and not args.resume:
        raise UserError(f"{checkpoint} exists from an earlier run; add --resume to continue it, or "
                        "use another --name/--work-dir.")
    if args.resume and not checkpoint.exists():
        raise UserError(f"--resume: no checkpoint at {checkpoint}; start without --resume.")

    data = load_training_images(args.data, args.resolution, split=args.split, channels=args.channels,
                                window=args.window)
    if args.resume:
        trainer = GANTrainer.from_checkpoint(checkpoint, data, kimg=args.kimg)
        print(f"Resuming {name} at {trainer.images_seen / 1000:.1f} kimg from {checkpoint}")
    else:
        arch = {}
        if args.model == "stylegan2":
            arch = {k: v for k, v in (("channel_base", args.channel_base),
                                      ("channel_max", args.channel_max)) if v is not None}
        elif args.channel_base is not None or args.channel_max is not None:
            raise UserError("--channel-base/--channel-max apply to stylegan2 only.")
        config = TrainConfig(
            model=args.model, kimg=args.kimg, batch_size=args.batch, seed=args.seed,
            lr=args.lr if args.lr is not None else (0.0025 if args.model == "stylegan2" else 0.0002),
            beta1=0.0 if args.model == "stylegan2" else 0.5,
            r1_gamma=args.r1_gamma, mixing_prob=args.mixing_prob, diffaugment=args.diffaugment,
            checkpoint_kimg=args.checkpoint_kimg, grid_kimg=args.report_kimg, arch=arch,
            dp_epsilon=args.dp_epsilon, dp_delta=args.delta, dp_max_grad_norm=args.clip,
            dp_preset=budget.preset if budget is not None else None,
        )
        trainer = GANTrainer(data, config)  # with DP: σ is planned here, before any image is read
        if trainer.dp_plan is not None:
            plan = trainer.dp_plan
            print(f"DP-SGD: target ε = {plan.target_epsilon:g}, δ = {plan.delta:.2g}, σ = "
                  f"{plan.noise_multiplier:.3f}, q = {plan.sample_rate:.4g}, {plan.steps} steps, clip "
                  f"{plan.max_grad_norm:g} ({plan.accountant} accountant)")
    work.mkdir(parents=True, exist_ok=True)
    # every invocation of this run (first one, then each --resume) goes into the model card
    previous = (work / "command.txt").read_text(encoding="utf-8") if args.resume else ""
    command = previous + _canonical_train_command(args) + "\n"
    atomic_write_text(work / "command.txt", command)
    command = " && ".join(line for line in command.splitlines() if line.strip())
    n_params = sum(p.numel() for p in trainer.G.parameters())
    print(f"Training {args.model} ({n_params / 1e6:.2f} M generator parameters) on {data.source}: "
          f"{len(data.images)} images {data.channels}x{data.native_size}x{data.native_size} "
          f"({data.fit} to {data.resolution} px), classes {data.class_names} {data.class_counts}, "
          f"device {trainer.device}, {args.kimg:g} kimg")
    log_path = work / "log.jsonl"

    def report(p) -> None:
        eta = max(0, p.total_images - p.images_seen) / max(p.images_per_s, 1e-9)
        r1 = f"  R1 {p.r1_penalty:.3f}" if p.r1_penalty is not None else ""
        d_text = f"D {p.d_loss:.3f}  " if p.d_loss is not None else ""  # None under DP
        print(f"kimg {p.images_seen / 1000:7.2f}/{p.total_images / 1000:g}  {d_text}"
              f"G {p.g_loss:.3f}{r1}  {p.images_per_s:6.1f} img/s  elapsed "
              f"{_format_seconds(p.elapsed_s)}  eta {_format_seconds(eta)}", flush=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            row = {"time": time.time(), "images_seen": p.images_seen, "d_loss": p.d_loss,
                   "g_loss": p.g_loss, "r1": p.r1_penalty, "elapsed_s": p.elapsed_s,
                   "images_per_s": p.images_per_s}
            if p.d_loss is None:
                del row["d_loss"]  # DP run: D's loss on real images is never written
            fh.write(json.dumps(row) + "\n")
        if p.grid is not None:
            save_grid_png(p.grid, work / "latest_grid.png")

    trainer.train(callback=report, checkpoint_path=checkpoint,
                  report_every_images=max(1, int(args.report_kimg * 1000)))
    save_generator(trainer, out, name=name, command=command, register=not args.no_register,
                   replace=args.replace)
    ledger = trainer.privacy_ledger()
    if ledger is not None:
        eps, delta = ledger.total()
        print(f"DP: ε = {eps:.4g} spent, δ = {delta:.3g} (n = {ledger.dataset_rows} images; "
              f"{ledger.entries[0].steps} DP-SGD steps on the discriminator); ledger in "
              f"{out / 'privacy_ledger.json'}")
    save_grid_png(trainer.sample_grid(), work / "final_grid.png")
    kept = ("grids (no checkpoint: DP runs cannot be resumed)" if ledger is not None
            else "checkpoint and grids")
    print(f"Saved the EMA generator to {out} ({trainer.images_seen / 1000:.1f} kimg, "
          f"{_format_seconds(trainer.train_seconds)} of training); {kept} in {work}")
    return 0


# -- sample ---------------------------------------------------------------------------------------------
def resolve_generator(model: str | None) -> Path:
    """A generator folder from a path, a model name, or 'demo' (the bundled generator)."""
    from medsyn_imaging.training.generator_store import demo_generator_path, list_generators

    if model is None or model == "demo":
        path = demo_generator_path()
        if not path.is_dir():
            raise UserError(f"The bundled demo generator is missing ({path}); pass a generator folder.")
        return path
    path = Path(model)
    if path.is_dir():
        return path
    for entry in list_generators():
        if entry.name == model:
            return entry.path
    raise UserError(f"No generator folder or model named {model!r}; see `medsyn imaging sample --list`.")


def cmd_sample(args: argparse.Namespace) -> int:
    from medsyn_imaging.io.image_grid import make_grid, save_grid_png
    from medsyn_imaging.training.generator_store import list_generators, load_generator

    if args.list:
        entries = list_generators()
        if not entries:
            print("No generators found; train one with `medsyn imaging train`.")
        for e in entries:
            kimg = e.card.get("training", {}).get("kimg", "?")
            classes = ", ".join(e.card.get("data", {}).get("class_names", []))
            print(f"{e.name:<32} {e.model:<10} {e.source:<8} {kimg} kimg  classes: {classes}  {e.path}")
        return 0
    if args.n < 1:
        raise UserError("-n must be at least 1.")
    if args.out is None and args.grid is None:
        raise UserError("Say where to write the images: --out DIR (and/or --grid preview.png).")
    generator = load_generator(resolve_generator(args.model))
    images, labels = generator.sample(args.n, label=args.label, seed=args.seed, truncation=args.truncation)
    if args.grid:
        save_grid_png(make_grid(images, ncol=min(8, args.n), scale=2), args.grid)
        print(f"Wrote a preview grid of {args.n} images to {args.grid}")
    if args.out:
        from medsyn_imaging.training.generator_store import export_samples

        written = export_samples(generator, images, labels, args.out, args.format,
                                 seed=args.seed, truncation=args.truncation)
        print(f"Wrote {args.n} synthetic {args.format.upper()} images to {written}")
    return 0
