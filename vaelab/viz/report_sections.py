"""The picture sections of ``vaelab report``, in the order they appear.

Each section is ``(title, make)``: ``make(ctx)`` (ctx a :class:`~vaelab.viz.report.ReportContext`)
returns a list of ``(caption, png_bytes)``, or raises :class:`NotApplicable` with the reason,
which the report shows in the section's place. A new picture is one function and one entry
in :data:`SECTIONS`; it asks ``ctx.view`` (a LatentView) or the model's capabilities, never
the model's name.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from .grids import grid, png_bytes, reconstruction_grid, sample_images, takes_label
from .report import NotApplicable, ReportContext

SAMPLES = 64
RECONSTRUCTIONS = 32


def samples(ctx: ReportContext) -> list[tuple[str, bytes]]:
    """Prior samples; a conditional model's of ``--label`` or with the classes cycled; an
    autoencoder's from a Gaussian fitted to its codes of the evaluation images (it has no prior)."""
    model = ctx.model
    if not hasattr(model, "sample"):
        raise NotApplicable("this model does not generate images")
    if not getattr(model, "can_sample", True):
        raise NotApplicable("this model cannot draw samples yet (it needs a second stage, such as a prior over its codes)")
    if hasattr(model, "code_gaussian"):
        batch = ctx.images(1000, "an autoencoder has no prior; its samples need codes of real images")
        codes = model.code_gaussian(batch.x)
        images = sample_images(model, SAMPLES, ctx.seed, codes=codes)
        return [(f"{SAMPLES} decoded codes drawn from a Gaussian fitted to the codes of {len(batch)} test images "
                 "(an autoencoder has no prior)", png_bytes(grid(images)))]
    if takes_label(model) and ctx.label is None:
        k = ctx.view.num_classes or 10
        images = sample_images(model, k * max(1, SAMPLES // k), ctx.seed)
        return [(f"samples with the classes cycled: column j is class j (0..{k - 1})", png_bytes(grid(images, nrow=k)))]
    label = ctx.label if takes_label(model) else None  # --label is for the conditional runs of a report
    images = sample_images(model, SAMPLES, ctx.seed, label=label)
    given = f" of class {label}" if label is not None else ""
    return [(f"{SAMPLES} samples{given}: decoder means for z ~ N(0, I)", png_bytes(grid(images)))]


def reconstructions(ctx: ReportContext) -> list[tuple[str, bytes]]:
    """Test images spread over the split, each row followed by its reconstructions."""
    if not hasattr(ctx.model, "reconstruct"):
        raise NotApplicable("this model does not reconstruct images")
    batch = ctx.images(RECONSTRUCTIONS, "reconstructions need test images")
    return [(f"{len(batch)} test images spread over the split (odd rows) above their reconstructions (even rows)",
             png_bytes(reconstruction_grid(ctx.model, batch)))]


MAP_IMAGES = 1000


def manifold(ctx: ReportContext) -> list[tuple[str, bytes]]:
    """The decoded manifold over the two most informative dimensions (style grids per class
    for a conditional model), from :mod:`.manifold`."""
    from .manifold import decoded_manifold, save_manifold

    data = ctx.images(MAP_IMAGES, "the manifold ranks dimensions on test images") if ctx.test is not None else None
    m = decoded_manifold(ctx.view.model, n=15, data=data, label=ctx.label if ctx.view.conditional else None)
    return [(f"the decoder over a {m.n}×{m.n} grid of codes in the plane of z[{m.dims[0]}], z[{m.dims[1]}] "
             "(how the grid is placed: under the figure)",
             _saved(lambda path: save_manifold(m, path)))]


def latent_map(ctx: ReportContext) -> list[tuple[str, bytes]]:
    """The codes of test images as 2-D points coloured by label, from :mod:`.latent_map`."""
    from .latent_map import latent_map as make_map, save_latent_map

    batch = ctx.images(MAP_IMAGES, "the latent map encodes test images")
    m = make_map(ctx.view, batch)
    how = "the codes" if m.projection is None else f"the codes projected by {m.projection}"
    return [(f"{how} of {len(batch)} test images spread over the split" + (f"; {m.note}" if m.note else ""),
             _saved(lambda path: save_latent_map(m, path)))]


def traversal(ctx: ReportContext) -> list[tuple[str, bytes]]:
    """The top dimensions, one row each, varied around the prior (from :mod:`.traversal`)."""
    from .captions import captioned_rows
    from .traversal import traversal as make_traversal

    batch = ctx.images(MAP_IMAGES, "the traversal ranks dimensions on test images")
    label = ctx.label if ctx.view.conditional else None
    if ctx.view.conditional and label is None:
        label = int(batch.y[0])
    t = make_traversal(ctx.view.model, batch, top=min(8, ctx.view.latent_dim), steps=9, label=label)
    given = f", class {label}" if label is not None else ""
    return [(f"one row per latent dimension, ranked by {t.measure} (each row's caption: the dimension and its "
             f"score), varied around {t.around} over ± 3 {t.spread}{given}",
             png_bytes(captioned_rows(t.images, t.captions())))]


def interpolation(ctx: ReportContext) -> list[tuple[str, bytes]]:
    """Pixel blending, then linear and spherical paths in z, between the first two of the
    test images shown (spread over the split) of different classes (from :mod:`.interpolation`)."""
    from .captions import captioned_rows
    from .interpolation import interpolate

    batch = ctx.images(MAP_IMAGES, "interpolation needs test images")
    y = batch.y if batch.y is not None else None
    j = next((i for i in range(1, len(batch)) if y is None or int(y[i]) != int(y[0])), None)
    if j is None:
        raise NotApplicable("interpolation needs two different test images")
    label = None
    if ctx.view.conditional:
        label = ctx.label if ctx.label is not None else int(y[0])
    result = interpolate(ctx.view.model, batch.x[0], batch.x[j], steps=10, label=label)
    lin, sl = result.measures["linear"], result.measures["slerp"]
    return [(f"test images 0 and {j}: pixels, linear z, slerp z (mean step length {lin['step_length']:.2f} "
             f"linear, {sl['step_length']:.2f} slerp)",
             png_bytes(captioned_rows(result.rows(), ["pixels", "linear z", "slerp z"])))]


def _saved(save) -> bytes:
    """The bytes a ``save(path)`` function of the picture modules writes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "picture.png"
        save(path)
        return path.read_bytes()


SECTIONS = [
    ("Samples", samples),
    ("Reconstructions", reconstructions),
    ("Traversals", traversal),
    ("Interpolation", interpolation),
    ("Decoded manifold", manifold),
    ("Latent map", latent_map),
]
