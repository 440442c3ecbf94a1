"""Throughput and memory of the 3D generator (MONAI latent diffusion) at 32³ and 64³ on this machine.

For each grid size and network size it trains a few steps of each stage on random volumes, samples one
volume, and reports, as medians over ``--repeats`` measurements in a fresh process each:

* autoencoder steps/s and diffusion steps/s (batch ``--batch``), i.e. volumes/s;
* seconds per DDIM step and per decode, and the time of one 50-step sample;
* the process's peak resident memory (RSS, MiB; CUDA: also the peak GPU memory);
* the named peer, in the same run: a bare MONAI training step of the same diffusion UNet written as in the
  MONAI LDM tutorial (``LatentDiffusionInferer`` + MSE + Adam, no MedSyn trainer) — MedSyn's step should cost
  the same.

    .venv/bin/python bench/imaging_3d.py                        # 32³ tiny+small, 64³ small; CPU
    .venv/bin/python bench/imaging_3d.py --device cuda --sizes 64 128 --presets small standard

GPU figures need a GPU; on a CPU-only machine they are not measured (docs/imaging_3d.md gives estimates).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(size: int, preset: str, batch: int, device: str, steps: int, threads: int) -> dict:
    """One measurement in this process (run by the parent in a fresh subprocess)."""
    import resource

    import numpy as np
    import torch
    import torch.nn.functional as F

    from medsyn_imaging.training.ldm_training import LDMConfig, LDMTrainer, decode_latents
    from medsyn_imaging.training.volume_data import IntensityMapping, VolumeTrainingSet

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    volumes = rng.uniform(0, 1, (4, 1, size, size, size)).astype(np.float32)
    data = VolumeTrainingSet(
        volumes, np.array([0, 1, 0, 1]), ["a", "b"], (2.0, 2.0, 2.0), "random", IntensityMapping("percentile")
    )
    trainer = LDMTrainer(
        data,
        LDMConfig(
            preset=preset,
            ae_steps=10**6,
            diffusion_steps=10**6,
            batch_size=batch,
            adv_start=0,
            checkpoint_every=0,
        ),
        device=device,
    )
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)

    def timed(fn, n):
        fn()  # warm-up (allocator, kernels)
        sync()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        return (time.perf_counter() - start) / n

    ae_s = timed(trainer.train_step_autoencoder, steps)
    trainer.scale_factor = trainer.measure_scale_factor(4)
    diff_s = timed(trainer.train_step_diffusion, steps)

    # the peer: a bare MONAI-tutorial diffusion step on the same networks
    from monai.inferers import LatentDiffusionInferer

    inferer = LatentDiffusionInferer(trainer.scheduler, scale_factor=trainer.scale_factor)
    opt = torch.optim.Adam(trainer.unet.parameters(), lr=1e-4)
    x = torch.from_numpy(volumes[:batch]).to(trainer.device)
    labels = torch.tensor([0, 1] * batch)[:batch].to(trainer.device)

    def bare_step():
        noise = torch.randn((batch, *trainer.arch.latent_shape(data.shape)), device=trainer.device)
        t = torch.randint(0, 1000, (batch,), device=trainer.device).long()
        pred = inferer(
            inputs=x,
            autoencoder_model=trainer.autoencoder,
            diffusion_model=lambda *a, **k: trainer.unet(*a, **k, class_labels=labels),
            noise=noise,
            timesteps=t,
        )
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()

    peer_s = timed(bare_step, steps)
    # sampling: DDIM steps and the decode, timed apart, then a 50-step sample = 50 x step + decode
    from monai.inferers import DiffusionInferer

    from medsyn_imaging.networks.ldm import build_sampling_scheduler

    trainer.unet.eval()
    trainer.autoencoder.eval()
    latent = torch.randn((1, *trainer.arch.latent_shape(data.shape)), device=trainer.device)
    with torch.no_grad():
        scheduler = build_sampling_scheduler(5)
        import functools

        model = functools.partial(trainer.unet, class_labels=labels[:1])
        ddim5 = timed(lambda: DiffusionInferer(scheduler).sample(latent, model, scheduler, verbose=False), 1)
        decode = timed(lambda: decode_latents(trainer.autoencoder, latent), 2)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import os

    load = os.getloadavg()[0]  # a shared machine: the 1-minute load average says how contended this was
    out = {
        "size": size,
        "preset": preset,
        "batch": batch,
        "device": str(trainer.device),
        "ae_steps_per_s": 1 / ae_s,
        "diffusion_steps_per_s": 1 / diff_s,
        "peer_steps_per_s": 1 / peer_s,
        "ddim_step_s": ddim5 / 5,
        "decode_s": decode,
        "sample_50_s": ddim5 / 5 * 50 + decode,
        "peak_rss_mib": rss,
        "load_average": load,
        "params_m": {
            "autoencoder": sum(p.numel() for p in trainer.autoencoder.parameters()) / 1e6,
            "unet": sum(p.numel() for p in trainer.unet.parameters()) / 1e6,
        },
    }
    if trainer.device.type == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument(
        "--repeats", type=int, default=3, help="measurements (fresh processes); medians shown"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args()
    if args.one:
        size, preset = args.one.split(":")
        print(json.dumps(measure(int(size), preset, args.batch, args.device, args.steps, args.threads)))
        return

    import torch

    print(
        f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, "
        f"torch {torch.__version__}, device {args.device}; medians of {args.repeats} fresh processes, "
        f"{args.steps} timed steps each"
    )
    if args.device == "cpu":
        print(
            "GPU figures: not measured here (no GPU on this machine); see docs/imaging_3d.md for estimates."
        )
    results = []
    for size in args.sizes:
        for preset in args.presets:
            runs = []
            for _ in range(args.repeats):
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    f"{size}:{preset}",
                    "--batch",
                    str(args.batch),
                    "--device",
                    args.device,
                    "--steps",
                    str(args.steps),
                    "--threads",
                    str(args.threads),
                ]
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if done.returncode != 0:
                    print(f"{size}³ {preset}: failed: {done.stderr.strip().splitlines()[-1:]}")
                    break
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            if not runs:
                continue
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], float)}
            row = {**runs[0], **med, "repeats": len(runs)}
            results.append(row)
            gpu = f", GPU peak {row['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in row else ""
            print(
                f"{size:>3}³ {preset:<8} AE {row['ae_steps_per_s']:.3f} steps/s | "
                f"diffusion {row['diffusion_steps_per_s']:.3f} steps/s (peer: bare MONAI step "
                f"{row['peer_steps_per_s']:.3f}) | DDIM step {row['ddim_step_s']:.3f} s, decode "
                f"{row['decode_s']:.2f} s, 50-step sample {row['sample_50_s']:.1f} s | peak RSS "
                f"{row['peak_rss_mib']:.0f} MiB{gpu} | params AE {row['params_m']['autoencoder']:.2f} M, "
                f"UNet {row['params_m']['unet']:.2f} M; batch {args.batch}; load average "
                f"{row.get('load_average', float('nan')):.1f}",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
