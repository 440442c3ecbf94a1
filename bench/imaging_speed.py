"""Training and sampling speed of the image generators (images per second), CPU and GPU.

    .venv/bin/python bench/imaging_speed.py                       # CPU (and CUDA if present)
    .venv/bin/python bench/imaging_speed.py --threads 1 --steps 10

For each model and resolution (32 px = 28x28 MedMNIST edge-padded; 64 px = resized) it times
``--steps`` full training steps (D step, lazy R1 every 16 steps, G step, EMA) on bundled PneumoniaMNIST
after 2 warm-up steps, and sampling ``--samples`` images from the generator in batches of 64. Widths:
``stylegan2-small`` is the demo model's (channel base 512, max 128), ``stylegan2`` the library default
(4096, 256); ``dcgan`` is the MONAI baseline (base 32 channels). Prints one line per configuration and
the median of ``--repeats`` timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {
    "stylegan2-small": ("stylegan2", {"channel_base": 512, "channel_max": 128}),
    "stylegan2": ("stylegan2", {}),
    "dcgan": ("dcgan", {}),
}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, resolution: int, device, steps: int, samples: int, batch: int, repeats: int) -> dict:
    import torch

    from medsyn_imaging.training.gan_training import GANTrainer, TrainConfig
    from medsyn_imaging.training.generator_store import generate
    from medsyn_imaging.training.training_data import load_training_images

    kind, arch = CONFIGS[name]
    data = load_training_images("pneumoniamnist", resolution)
    config = TrainConfig(model=kind, batch_size=batch, kimg=1000, arch=dict(arch),
                         lr=0.0025 if kind == "stylegan2" else 0.0002)
    trainer = GANTrainer(data, config, device=device)
    for _ in range(2):
        trainer.train_step()
    train_rates, sample_rates = [], []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        _sync(device)
        train_rates.append(steps * batch / (time.perf_counter() - start))
        labels = torch.arange(samples) % data.n_classes
        generate(trainer.G_ema, labels[:64], seed=0, device=trainer.device)  # warm-up
        _sync(device)
        start = time.perf_counter()
        generate(trainer.G_ema, labels, seed=1, device=trainer.device)
        _sync(device)
        sample_rates.append(samples / (time.perf_counter() - start))
    return {"model": name, "resolution": resolution, "device": str(trainer.device),
            "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off",
            "g_params_m": round(sum(p.numel() for p in trainer.G.parameters()) / 1e6, 2),
            "train_img_s": round(statistics.median(train_rates), 1),
            "sample_img_s": round(statistics.median(sample_rates), 1), "batch": batch}


def main() -> int:
    import torch

    from medsyn_core.device import choose_device

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="stylegan2-small,stylegan2,dcgan")
    parser.add_argument("--resolutions", default="32,64")
    parser.add_argument("--steps", type=int, default=5, help="training steps per timing (default 5)")
    parser.add_argument("--samples", type=int, default=256, help="images per sampling timing (default 256)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--devices", default=None, help="comma list, default: cpu plus cuda if available")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available()
                                                                        else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), devices {devices}")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    rows = []
    for dev_name in devices:
        device = choose_device(dev_name)
        for name in args.models.split(","):
            for res in (int(r) for r in args.resolutions.split(",")):
                row = measure(name, res, device, args.steps, args.samples, args.batch, args.repeats)
                rows.append(row)
                print(f"{row['device']:<6} {name:<16} {res:>3} px  G {row['g_params_m']:5.2f} M  "
                      f"amp {row['amp']:<8} train {row['train_img_s']:8.1f} img/s  "
                      f"sample {row['sample_img_s']:8.1f} img/s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
