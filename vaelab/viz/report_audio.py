"""The sections of ``vaelab report`` for a speech run: spectrograms of test clips above their
reconstructions, with ``<audio>`` players (WAV data URIs, Griffin-Lim inversions) beside them,
and one conversion per pair of clips of different speakers where the model converts.
The page stays one self-contained file: every sound is embedded like every picture."""
from __future__ import annotations

import base64
import html

import torch

from .report import NotApplicable, ReportContext

CLIPS = 4


def _player(caption: str, x: torch.Tensor, settings: dict) -> str:
    from ..data.audio import invert, wav_bytes

    data = base64.b64encode(wav_bytes(invert(x, settings), settings["sample_rate"])).decode("ascii")
    return (f"<figure><audio controls preload=auto src='data:audio/wav;base64,{data}'></audio>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _clips(ctx: ReportContext) -> object:
    from .grids import spread_rows

    if ctx.test is None:
        raise NotApplicable(f"the audio sections need test clips: {ctx.test_note}")
    return ctx.test.subset(spread_rows(len(ctx.test), CLIPS, ctx.seed)).batch()


def audio_sections(ctx: ReportContext, figure) -> list[str]:
    """HTML of the speech sections (``figure(caption, png)`` renders a picture as the report does)."""
    from .spectrograms import save_conversion_panels, spectrogram_pairs_png

    try:
        batch = _clips(ctx)
    except NotApplicable as exc:
        return [f"<p class=note>not shown: {html.escape(str(exc))}</p>"]
    model, settings = ctx.model, ctx.model.front_end
    names = (ctx.test.front_end or {}).get("speakers") or []
    lengths = batch.extras["lengths"]
    recon = model.reconstruct(batch)
    out = ["<h3>Reconstructions (listen)</h3>",
           figure(f"{len(batch)} test clips (top) above their reconstructions (bottom)", spectrogram_pairs_png(model, batch))]
    for i in range(len(batch)):
        t = int(lengths[i])
        who = _speaker(batch, i, names)
        out.append("<div>" + _player(f"clip {i + 1}{who}: Griffin-Lim of the input", batch.x[i, :, :t], settings)
                   + _player(f"clip {i + 1}: reconstruction", recon[i, :, :t], settings) + "</div>")
    speakers = batch.extras.get("speaker", batch.y)
    other = next((j for j in range(1, len(batch)) if speakers is not None and int(speakers[j]) != int(speakers[0])), None)
    if other is not None and model.speaker_vector(batch[:1]) is not None:
        t, tr = int(lengths[0]), int(lengths[other])
        converted = model.convert(batch[:1], [batch[other:other + 1]])[0, :, :t]
        import io
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            path = save_conversion_panels([("clip 1", [batch.x[0, :, :t].numpy(), batch.x[other, :, :tr].numpy(),
                                                        converted.numpy()])], Path(tmp) / "p.png")
            png = path.read_bytes()
        out += ["<h3>Conversion (listen)</h3>",
                figure(f"clip 1 re-voiced as clip {other + 1}'s speaker{_speaker(batch, other, names)}", png),
                "<div>" + _player("converted", converted, settings) + "</div>"]
    return out


def _speaker(batch, i: int, names) -> str:
    s = batch.extras.get("speaker")
    if s is None:
        return ""
    k = int(s[i])
    return f" ({names[k]})" if k < len(names) else f" (speaker {k})"
