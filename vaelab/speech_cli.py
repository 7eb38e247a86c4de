"""The ``vaelab convert`` command: a thin call of :func:`vaelab.convert.convert_wav`."""
from __future__ import annotations

import time


def add_convert_command(sub) -> None:
    p = sub.add_parser("convert", help="re-voice a WAV in another speaker's voice with a speech run (one-/few-shot)",
                       description="Decode the content of --source with the speaker of the --target reference "
                                   "recordings (one or more of the same speaker) and write the result as WAV "
                                   "(Griffin-Lim inversion of the model's log-mel output).")
    p.add_argument("run", help="run or model directory of a speech model (ae-speech, adain-vc, vq-vc)")
    p.add_argument("--source", required=True, metavar="SRC.wav", help="the recording whose words are kept")
    p.add_argument("--target", required=True, nargs="+", metavar="REF.wav",
                   help="one or more recordings of the target speaker (their speaker vectors are averaged)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.wav", help="WAV file to write")
    p.add_argument("--griffin-lim-iters", type=int, default=0,
                   help="Griffin-Lim iterations (default: 0 = the model's front end's)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: 0 = all cores)")


def cmd_convert(args) -> None:
    from .convert import convert_wav
    from .errors import VaelabError
    from .threads import set_threads

    if args.threads < 0 or args.griffin_lim_iters < 0:
        raise VaelabError("--threads and --griffin-lim-iters must be 0 or more")
    set_threads(args.threads)
    start = time.perf_counter()
    done = convert_wav(args.run, args.source, args.target, args.output, args.griffin_lim_iters)
    print(f"wrote {done['output']} ({done['seconds']:.2f} s at {done['sample_rate']} Hz, "
          f"{done['references']} reference clip{'s' if done['references'] > 1 else ''}, "
          f"{time.perf_counter() - start:.2f} s)")
