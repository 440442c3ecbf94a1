"""Hostile inputs: time and memory of MedSyn's readers on each reproduced attack (issue 20).

Each attack runs in a fresh Python process (so that peak RSS means something); printed: wall time of the
read, growth of the process's peak RSS during it (MB) and what the read answered. The crafted files
come from ``tests/hostile_files.py``. Run against an older checkout (``--root``) for the "before".

    .venv/bin/python bench/hostile_inputs.py [--root PATH_OF_A_CHECKOUT]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

ATTACKS = {
    "57-byte .nii.gz claiming 2000x2000x500": "p = T / 'a.nii.gz'; "
    "p.write_bytes(H.nifti_header_only((2000, 2000, 500))); run(lambda: read_nifti(p))",
    ".nii claiming 30000^3": "p = T / 'a.nii'; "
    "p.write_bytes(H.nifti_header_only((30000,) * 3, compressed=False)); run(lambda: read_nifti(p))",
    "1 MB zip of 1 GiB zeros, uploaded": "b = H.zip_of_zeros(2**30); "
    "run(lambda: load_uploaded([('s.zip', b)]))",
    "DICOM nested 5000 levels (undefined lengths)": "p = T / 'd.dcm'; "
    "p.write_bytes(H.nested_dicom_bytes(5000)); run(lambda: read_dicom_file(p))",
    "DICOM nested 2000 levels (defined lengths)": "p = T / 'd.dcm'; "
    "p.write_bytes(H.nested_dicom_bytes(2000, True)); run(lambda: read_dicom_file(p))",
    "PNG claiming 30000x30000": "p = T / 'b.png'; p.write_bytes(H.png_with_size(30000, 30000)); "
    "run(lambda: read_image(p))",
    "CSV of 20,000 columns x 3 rows": "c = 20000; d = (','.join(f'c{i}' for i in range(c)) + '\\n' + "
    "'\\n'.join(','.join('1' for _ in range(c)) for _ in range(3))).encode(); "
    "run(lambda: read_table(d, name='w.csv'))",
}

PRELUDE = """
import gc, pathlib, resource, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
import hostile_files as H
from medsyn_imaging.io.dicom_read import read_dicom_file
from medsyn_imaging.io.image_io import read_image
from medsyn_imaging.io.nifti_io import read_nifti
from medsyn_imaging.io.sources import load_uploaded
from medsyn_tabular.data.io import read_table
T = pathlib.Path(tempfile.mkdtemp())

def run(read):
    gc.collect()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        out = read()
        problems = getattr(out, 'problems', [])
        answer = 'returned' + (f' with problem: {problems[0].message[:60]}' if problems else '')
    except BaseException as exc:
        answer = f'{type(exc).__name__}: {str(exc)[:60]}'
    seconds = time.perf_counter() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(f'{seconds:.3f}|{grown:.1f}|{answer}')
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(HERE), help="checkout whose readers are measured")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PYTHONPATH": args.root, "MEDSYN_HOME": home}
        print("| attack | seconds | peak RSS growth | answer |\n|---|---|---|---|")
        for name, code in ATTACKS.items():
            proc = subprocess.run([sys.executable, "-c", PRELUDE + code, str(HERE / "tests")], env=env,
                                  capture_output=True, text=True, timeout=900, cwd=args.root)
            lines = proc.stdout.strip().splitlines()
            seconds, grown, answer = (lines[-1].split("|", 2) if lines
                                      else ("?", "?", proc.stderr.strip().splitlines()[-1][:80]))
            print(f"| {name} | {seconds} | +{grown} MB | {answer} |")


if __name__ == "__main__":
    main()
