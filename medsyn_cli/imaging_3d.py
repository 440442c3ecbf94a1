"""CLI of the 3D generator: ``medsyn imaging train-3d``, ``sample-3d`` and ``evaluate-3d``.

:func:`add_commands` adds them to the ``imaging`` group. ``train-3d`` keeps its checkpoint and log in a work
folder (default ``$MEDSYN_HOME/runs/<name>/``), from which ``--resume`` continues. Heavy imports stay inside
the handlers so ``medsyn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

from medsyn_cli.main import UserError


def add_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train-3d",
        help="train a 3D generator (latent diffusion, MONAI) on a folder of volumes",
        description="Train a latent diffusion model on DATA: a folder of NIfTI files or DICOM series (one "
        "sub-folder per class for a class-conditional model). Every volume is reoriented to RAS, "
        "resampled to --spacing and cropped/padded to --shape (MONAI transforms). Stage 1 trains "
        "the autoencoder, stage 2 the diffusion model in its latent space.",
    )
    train.add_argument("data", metavar="DATA")
    train.add_argument("--out", required=True, help="folder for the trained generator (must not exist)")
    train.add_argument("--name", default=None, help="model name (default: the --out folder's name)")
    train.add_argument("--replace", action="store_true", help="replace the model registered under this name")
    train.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=[32, 32, 32],
        metavar=("X", "Y", "Z"),
        help="training grid in voxels (default 32 32 32; 128 128 128 on a GPU)",
    )
    train.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=[2.0, 2.0, 2.0],
        metavar=("X", "Y", "Z"),
        help="voxel size of the grid in mm (default 2 2 2)",
    )
    train.add_argument(
        "--window",
        default="auto",
        help="intensity: auto (CT: -1000..1000 HU, else percentiles), percentile, ct, or a CT "
        "preset (lung, abdomen, brain, bone …)",
    )
    train.add_argument(
        "--timepoints",
        choices=("first", "all"),
        default="first",
        help="of 4D series: the first time point, or each as its own volume",
    )
    train.add_argument(
        "--size",
        choices=("tiny", "small", "standard"),
        default="small",
        help="network size (tiny: tests/CPU demo; small: 64³; standard: 128³ on a GPU)",
    )
    train.add_argument("--ae-steps", type=int, default=2000, help="autoencoder steps (default 2000)")
    train.add_argument("--diffusion-steps", type=int, default=4000, help="diffusion steps (default 4000)")
    train.add_argument("--batch", type=int, default=2, help="volumes per step (default 2)")
    train.add_argument("--ddim-steps", type=int, default=50, help="DDIM sampling steps (default 50)")
    train.add_argument(
        "--perceptual-weights",
        default=None,
        metavar="PATH",
        help="local torchvision ResNet-50 weights for the perceptual loss (never downloaded)",
    )
    train.add_argument("--adv-weight", type=float, default=0.01, help="adversarial loss weight (0 = off)")
    train.add_argument(
        "--decode-roi",
        type=int,
        nargs=3,
        default=None,
        metavar=("X", "Y", "Z"),
        help="latent tile for sliding-window decoding of large volumes (e.g. 32 32 32)",
    )
    train.add_argument("--compile", action="store_true", help="torch.compile the UNet (CUDA only)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-every", type=int, default=250, help="checkpoint every this many steps")
    train.add_argument("--report-every", type=int, default=10, help="print progress every this many steps")
    train.add_argument(
        "--work-dir", default=None, help="checkpoint/log folder (default $MEDSYN_HOME/runs/<name>)"
    )
    train.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint in the work folder"
    )
    train.add_argument("--no-register", action="store_true", help="do not record the model in the store")
    train.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="differential privacy: not available for the 3D model (refused with the reason)",
    )
    train.set_defaults(func=cmd_train_3d)

    sample = sub.add_parser(
        "sample-3d", help="generate synthetic volumes from a 3D generator and export them"
    )
    sample.add_argument("model", metavar="MODEL", help="a 3D generator folder or its model name")
    sample.add_argument("-n", type=int, default=2, help="number of volumes (default 2)")
    sample.add_argument("--label", default=None, help="class index or name (default: cycle through classes)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--ddim-steps", type=int, default=None, help="DDIM steps (default: the model's)")
    sample.add_argument(
        "--format",
        choices=("dicom", "dicom-enhanced", "nifti"),
        default="nifti",
        help="a DICOM series per volume, one Enhanced multi-frame DICOM file per volume "
        "(highdicom), or NIfTI (default)",
    )
    sample.add_argument("--out", required=True, help="output folder (must not exist)")
    sample.set_defaults(func=cmd_sample_3d)

    ev = sub.add_parser(
        "evaluate-3d",
        help="FID on three planes, FRD and 3D memorisation vs real volumes",
        description="Sample MODEL_DIR (or read a folder of synthetic NIfTI volumes) and compare "
        "with the real volumes of DATA on the model's grid; every number beside its "
        "real-vs-real floor.",
    )
    ev.add_argument("source", metavar="MODEL_DIR", help="a 3D generator folder")
    ev.add_argument("--data", required=True, help="the real volumes (as for train-3d)")
    ev.add_argument("--out", required=True, help="report file, .html or .json")
    ev.add_argument(
        "-n", type=int, default=None, help="volumes to sample (default: as many as the real ones)"
    )
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--feature-epochs", type=int, default=None, help="epochs of the slice feature network")
    ev.add_argument(
        "--frd-fast",
        action="store_true",
        help="FRD on the original image only (no LoG/wavelet filters): about 5x faster",
    )
    ev.add_argument("--ssim-threshold", type=float, default=0.95, help="near-copy 3D SSIM threshold (0.95)")
    ev.set_defaults(func=cmd_evaluate_3d)


def _canonical_command(args: argparse.Namespace) -> str:
    parts = [
        "medsyn",
        "imaging",
        "train-3d",
        args.data,
        "--out",
        args.out,
        "--shape",
        *map(str, args.shape),
        "--spacing",
        *(f"{s:g}" for s in args.spacing),
        "--window",
        args.window,
        "--timepoints",
        args.timepoints,
        "--size",
        args.size,
        "--ae-steps",
        str(args.ae_steps),
        "--diffusion-steps",
        str(args.diffusion_steps),
        "--batch",
        str(args.batch),
        "--ddim-steps",
        str(args.ddim_steps),
        "--adv-weight",
        f"{args.adv_weight:g}",
        "--seed",
        str(args.seed),
    ]
    if args.perceptual_weights:
        parts += ["--perceptual-weights", args.perceptual_weights]
    if args.decode_roi:
        parts += ["--decode-roi", *map(str, args.decode_roi)]
    for flag in ("compile", "resume", "no_register", "replace"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    if args.name:
        parts += ["--name", args.name]
    return " ".join(shlex.quote(p) for p in parts)


def cmd_train_3d(args: argparse.Namespace) -> int:
    from medsyn_core import model_store, names
    from medsyn_core.files import atomic_write_text
    from medsyn_imaging.training.ldm_training import DP_REFUSAL, LDMConfig, LDMTrainer, throughput_note
    from medsyn_imaging.training.volume_data import load_training_volumes
    from medsyn_imaging.training.volume_generator_store import save_volume_generator

    if args.epsilon is not None:
        raise UserError(DP_REFUSAL)
    out = Path(args.out)
    if out.exists() and not args.replace:
        raise UserError(f"{out} already exists; choose a new --out folder.")
    name = args.name or out.name
    names.check_name(name)
    if not args.no_register:
        model_store.ensure_model_name_free(name, replace=args.replace)
    work = Path(args.work_dir) if args.work_dir else names.run_dir(name)
    checkpoint = work / "checkpoint.pt"
    if checkpoint.exists() and not args.resume:
        raise UserError(
            f"{checkpoint} exists from an earlier run; add --resume to continue it, or use another "
            "--name/--work-dir."
        )
    if args.resume and not checkpoint.exists():
        raise UserError(f"--resume: no checkpoint at {checkpoint}; start without --resume.")
    data = load_training_volumes(
        args.data, tuple(args.shape), tuple(args.spacing), args.window, args.timepoints
    )
    for note in data.notes:
        print(f"note: {note}")
    if args.resume:
        trainer = LDMTrainer.from_checkpoint(checkpoint, data, diffusion_steps=args.diffusion_steps)
        print(f"Resuming {name} at step {trainer.step} ({trainer.stage}) from {checkpoint}")
    else:
        config = LDMConfig(
            preset=args.size,
            ae_steps=args.ae_steps,
            diffusion_steps=args.diffusion_steps,
            batch_size=args.batch,
            ddim_steps=args.ddim_steps,
            seed=args.seed,
            perceptual_weights=args.perceptual_weights,
            adv_weight=args.adv_weight,
            checkpoint_every=args.checkpoint_every,
            compile=args.compile,
            decode_roi=list(args.decode_roi) if args.decode_roi else None,
        )
        trainer = LDMTrainer(data, config)
    work.mkdir(parents=True, exist_ok=True)
    previous = (work / "command.txt").read_text(encoding="utf-8") if args.resume else ""
    command = previous + _canonical_command(args) + "\n"
    atomic_write_text(work / "command.txt", command)
    command = " && ".join(line for line in command.splitlines() if line.strip())
    n_ae = sum(p.numel() for p in trainer.autoencoder.parameters())
    n_unet = sum(p.numel() for p in trainer.unet.parameters())
    print(
        f"Training a 3D LDM ({args.size}: {n_ae / 1e6:.2f} M autoencoder + {n_unet / 1e6:.2f} M UNet "
        "parameters) "
        f"on {data.source}: {len(data.volumes)} volumes, grid {'x'.join(map(str, data.shape))} at "
        f"{'x'.join(f'{s:g}' for s in data.spacing)} mm, intensity {data.intensity.name}, classes "
        f"{data.class_names} {data.class_counts}, device {trainer.device}"
    )
    log_path = work / "log.jsonl"

    def report(p) -> None:
        losses = "  ".join(f"{k} {v:.4g}" for k, v in p.losses.items())
        print(f"{p.stage:<11} step {p.step:6d}/{p.total_steps}  {losses}  {throughput_note(p)}", flush=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(
                json.dumps(
                    {
                        "time": time.time(),
                        "stage": p.stage,
                        "step": p.step,
                        **p.losses,
                        "steps_per_s": p.steps_per_s,
                    }
                )
                + "\n"
            )

    trainer.train(callback=report, checkpoint_path=checkpoint, report_every=args.report_every)
    save_volume_generator(
        trainer, out, name=name, command=command, register=not args.no_register, replace=args.replace
    )
    print(
        f"Saved the 3D generator to {out} ({trainer.step} steps, {trainer.train_seconds:.0f} s of training); "
        f"checkpoint in {work}"
    )
    return 0


def resolve_volume_generator(model: str) -> Path:
    from medsyn_imaging.training.volume_generator_store import list_volume_generators

    path = Path(model)
    if path.is_dir():
        return path
    for entry in list_volume_generators():
        if entry.name == model:
            return entry.path
    raise UserError(
        f"No 3D generator folder or model named {model!r}; train one with `medsyn imaging train-3d`."
    )


def cmd_sample_3d(args: argparse.Namespace) -> int:
    from medsyn_imaging.training.volume_generator_store import export_samples, load_volume_generator

    if args.n < 1:
        raise UserError("-n must be at least 1.")
    if Path(args.out).exists():
        raise UserError(f"{args.out} already exists; choose a new --out folder.")
    generator = load_volume_generator(resolve_volume_generator(args.model))
    volumes = generator.sample(args.n, label=args.label, seed=args.seed, ddim_steps=args.ddim_steps)
    written = export_samples(
        generator, volumes, args.out, args.format, seed=args.seed, ddim_steps=args.ddim_steps
    )
    print(f"Wrote {args.n} synthetic volume(s) ({volumes[0].describe()}) as {args.format} to {written}")
    return 0


def cmd_evaluate_3d(args: argparse.Namespace) -> int:
    from medsyn_imaging.evaluation.imaging_report import save_report_copy
    from medsyn_imaging.evaluation.volume_metrics import evaluate_volumes, report_numbers
    from medsyn_imaging.training.volume_data import load_training_volumes
    from medsyn_imaging.training.volume_generator_store import load_volume_generator

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm", ".json"):
        raise UserError(f"--out {out.name}: the report must be a .html or .json file.")
    generator = load_volume_generator(resolve_volume_generator(args.source))
    data_cfg = generator.config["data"]
    window = data_cfg["intensity"].get("name") if data_cfg["intensity"]["kind"] == "window" else "percentile"
    real = load_training_volumes(args.data, generator.shape, generator.spacing, window)
    n = args.n or len(real.volumes)
    print(f"{real.source}: {len(real.volumes)} real volumes; sampling {n} from {generator.name}")
    synthetic, _ = generator.sample_arrays(n, seed=args.seed)
    report = evaluate_volumes(
        real,
        synthetic,
        seed=args.seed,
        feature_epochs=args.feature_epochs,
        frd_image_types=["Original"] if args.frd_fast else None,
        ssim_threshold=args.ssim_threshold,
        synthetic_label=generator.name,
        log=print,
    )
    for section in report.sections:
        for m in section.metrics:
            ref = f"  (vs {m.reference:.4g} {m.reference_label})" if m.reference is not None else ""
            print(f"  {m.label:<40} {m.formatted()}{ref}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    report.save(out)
    copy = save_report_copy(report)
    print(f"report written to {out} (a JSON copy for the app: {copy}); numbers: {report_numbers(report)}")
    return 0
