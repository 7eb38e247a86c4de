"""The picture sections of ``vaelab report``, in the order they appear.

Each section is ``(title, make)``: ``make(ctx)`` (ctx a :class:`~vaelab.viz.report.ReportContext`)
returns a list of ``(caption, png_bytes)``, or raises :class:`NotApplicable` with the reason,
which the report shows in the section's place. A new picture is one function and one entry
in :data:`SECTIONS`; it asks ``ctx.view`` (a LatentView) or the model's capabilities, never
the model's name.
"""
from __future__ import annotations

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
    """The first test images, each row followed by its reconstructions."""
    if not hasattr(ctx.model, "reconstruct"):
        raise NotApplicable("this model does not reconstruct images")
    batch = ctx.images(RECONSTRUCTIONS, "reconstructions need test images")
    return [(f"the first {len(batch)} test images (odd rows) above their reconstructions (even rows)",
             png_bytes(reconstruction_grid(ctx.model, batch)))]


SECTIONS = [
    ("Samples", samples),
    ("Reconstructions", reconstructions),
]
