"""Time of ``vaelab.convert.convert_wav`` on a 1-second clip, Griffin-Lim inversion included: the
issue's goal is ≤ 0.5 s. The model is loaded once (as a server or a loop over files would), the
first call (librosa's compiled kernels loading, the JIT cache) is reported apart, then the
median of ``--repeats`` calls. One thread, as ``--threads 1`` sets it (torch and numpy's BLAS);
``--blas-all-cores`` also times, alternating call by call, torch on one thread with numpy's BLAS
left on every core, as ``--threads 1`` left it before it reached BLAS.

    python benchmarks/convert_speed.py RUN [--repeats 10] [--blas-all-cores]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from threadpoolctl import threadpool_limits

    from vaelab.convert import convert_wav, speech_model
    from vaelab.data.audio import write_wav
    from vaelab.threads import set_threads

    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--blas-all-cores", action="store_true")
    args = p.parse_args()
    set_threads(1)
    settings = {"one thread": 1, **({"BLAS on all cores": os.cpu_count() or 1} if args.blas_all_cores else {})}
    model = speech_model(args.run)
    rate = model.front_end["sample_rate"]
    t = np.arange(rate) / rate  # 1 s: a gliding harmonic tone, a stand-in for a spoken clip
    wave = sum(np.sin(2 * np.pi * k * (120 + 40 * t) * t) / k for k in range(1, 12)).astype(np.float32) * 0.2
    with tempfile.TemporaryDirectory() as tmp:
        src, ref, out = Path(tmp) / "src.wav", Path(tmp) / "ref.wav", Path(tmp) / "out.wav"
        write_wav(src, wave, rate)
        write_wav(ref, wave[::-1].copy(), rate)
        start = time.perf_counter()
        convert_wav(args.run, src, [ref], out, model=model)
        first = time.perf_counter() - start
        times = {name: [] for name in settings}
        for _ in range(args.repeats):
            for name, blas in settings.items():
                with threadpool_limits(blas, user_api="blas"):
                    start = time.perf_counter()
                    convert_wav(args.run, src, [ref], out, model=model)
                    times[name].append(time.perf_counter() - start)
    print(f"convert of a 1.00 s clip ({model.name}, Griffin-Lim {model.front_end['griffin_lim_iters']} iterations, "
          f"torch on 1 thread): first call {first:.3f} s")
    for name, seconds in times.items():
        print(f"  {name}: median of {args.repeats} {statistics.median(seconds):.3f} s, min {min(seconds):.3f} s")


if __name__ == "__main__":
    main()
