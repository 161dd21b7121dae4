"""The commands that need no data: ``spectrack demo`` (the bundled sample study) and ``spectrack phantom``
(write a digital phantom study). Registered on the app by :mod:`spectrack.cli.root`.
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from .output import _run_with_progress, _say, _warn, _wrote, print_table


def demo(
    out: Path = typer.Option(Path("results/demo"), "--out", "-o", help="Output folder."),
    force: bool = typer.Option(False, "--force", help="Replace files in the output folder that spectrack did not write "
                                                       "(refused by default)."),
):
    """Run the main job on the bundled sample study and print the %ID table."""
    from ..phantom.sample import sample_study

    info_ = sample_study()
    _say(f"sample study: {info_['study']} (settings in its spectrack.toml, truth in {info_['truth']})")
    from ..pipeline import run_study
    from ..settings import Settings

    res = _run_with_progress(run_study, info_["study"], Settings(), out, command=["spectrack", "demo"], force=force)
    print_table(res.table)
    _warn(res.metadata.get("warnings", []))
    _wrote(res.outputs.values())


def phantom(
    out: Path = typer.Argument(..., help="Folder to write the phantom study into."),
    preset: str = typer.Option("nhp", help="rat | nhp | human."),
    seed: int = typer.Option(0, help="Random seed (geometry jitter, noise, file names)."),
    units: str = typer.Option("counts", help="counts | bqml."),
    psf_fwhm_mm: float = typer.Option(0.0, help="Gaussian PSF FWHM (mm); 0 = none."),
    noise: bool = typer.Option(False, "--noise/--no-noise", help="Poisson noise on counts."),
    acquisition: str = typer.Option("exact", help="exact (ideal image, optional Gaussian blur and noise) | "
                                                  "realistic (projection with attenuation and collimator blur, "
                                                  "noise on the projections, OSEM)."),
    vertebrae: str = typer.Option("continuous", help="continuous (a bone shell around the canal) | discrete "
                                                     "(separate vertebral bodies with discs, their true positions "
                                                     "in truth.json; automatic regions then cut the canal levels "
                                                     "at the vertebrae)."),
    intracranial_csf: bool = typer.Option(False, "--intracranial-csf/--no-intracranial-csf",
                                          help="Draw lateral ventricles and a cisterna magna as their own "
                                               "compartment, csf_intracranial (off: brain holds them)."),
    force: bool = typer.Option(False, "--force", help="Replace files in the output folder that spectrack did not write "
                                                       "(refused by default)."),
):
    """Write a digital phantom study (DICOM export, NIfTI study, labels, exact truth, and a study file
    spectrack.toml so that 'spectrack quantify OUT' needs no option)."""
    from ..phantom import make_study
    from ..settings import SPECIES

    if preset not in SPECIES:
        raise typer.BadParameter(f"must be one of {', '.join(SPECIES)}, got {preset!r}", param_hint="'--preset'")
    if units not in ("counts", "bqml"):
        raise typer.BadParameter(f"must be counts or bqml, got {units!r}", param_hint="'--units'")
    if acquisition not in ("exact", "realistic"):
        raise typer.BadParameter(f"must be exact or realistic, got {acquisition!r}", param_hint="'--acquisition'")
    if vertebrae not in ("continuous", "discrete"):
        raise typer.BadParameter(f"must be continuous or discrete, got {vertebrae!r}", param_hint="'--vertebrae'")
    from ..settings import _RANGES

    lo, hi, unit = _RANGES["seed"]
    if not lo <= seed <= hi:
        raise typer.BadParameter(f"must be zero or positive, got {seed}" if seed < 0 else
                                 f"must be between {lo} and {hi} {unit}, got {seed}", param_hint="'--seed'")
    lo, hi, unit = _RANGES["psf_fwhm_mm"]
    if not math.isfinite(psf_fwhm_mm):
        raise typer.BadParameter(f"must be a finite number, got {psf_fwhm_mm}", param_hint="'--psf-fwhm-mm'")
    if not lo <= psf_fwhm_mm <= hi:
        raise typer.BadParameter(f"must be between {lo:g} and {hi:g} {unit} (0 = no blur), got {psf_fwhm_mm:g}",
                                 param_hint="'--psf-fwhm-mm'")
    from ..io_utils import output_folder
    from ..phantom.core import PHANTOM_OUTPUTS

    with output_folder(out, PHANTOM_OUTPUTS, force=force, command="spectrack phantom") as tmp:
        make_study(tmp, preset=preset, seed=seed, units=units, psf_fwhm_mm=psf_fwhm_mm, noise=noise,
                   study_file=True, acquisition=acquisition, vertebrae=vertebrae, intracranial_csf=intracranial_csf)
    _say(f"wrote phantom study to {out} (settings in {out / 'spectrack.toml'}, truth in {out / 'truth.json'}); "
         f"quantify it with: spectrack quantify {out}")
