"""Species presets of the digital phantom: anatomy, kinetics and acquisition.

Anatomy is given in a **body frame** in millimetres: ``x`` to the subject's
left, ``y`` dorsal (posterior), ``z`` cranial, with ``z = 0`` at the caudal
end of the modelled body. For every species the subject lies head first with
the dorsal side toward +y (as a supine human in DICOM LPS). Ellipsoids are
``(centre_xyz_mm, semi_axes_xyz_mm)``.

Sizes are round, plausible values for a ~300 g rat (250 mm nose to tail base),
a ~4 kg cynomolgus monkey (450 mm crown-rump) and a 170 cm adult human (modelled
from the vertex to the upper thighs, 920 mm; the legs are outside the field of
view and not modelled). They are not measurements: the phantom is a test
object. The only sourced target is the NHP brain peak of roughly 4-10 %ID
(``REFERENCE.md`` section 1); the other kinetic rates are illustrative.

``vertebrae`` gives the vertebral formula used by the opt-in discrete spine
(``make_phantom(..., vertebrae="discrete")``): cervical, thoracic and lumbar
counts (rat 7/13/6, cynomolgus monkey 7/12/7, human 7/12/5) and the sacrum
(fused: one bone; ``sacral`` is the number of fused segments where given),
plus a nominal intervertebral disc thickness ``disc_mm`` (round values, not
measurements). The levels' z ranges are the segment boundaries: the
sacral/lumbar boundary is the L/S1 disc, lumbar/thoracic the T/L1 disc,
thoracic/cervical the C7/T1 disc.

``intracranial_csf`` gives the opt-in intracranial CSF spaces
(``make_phantom(..., intracranial_csf=True)``), as fractions of the brain's
semi-axes: two lateral ventricles (centre offsets and semi-axes) and a
cisterna magna just above the foramen magnum, dorsal to the canal's cranial
end (semi-axes as multiples of the cervical canal radius). Round values chosen
to give plausible volumes (human ventricles about 20 mL, NHP about 1 mL), not
measurements. Their kinetic compartment ``csf_intracranial`` takes over the
canal-brain exchange: rostral CSF flow carries tracer from the cervical canal
into it, and it drains to the brain parenchyma, to blood and to lymph nodes
(rates in ``Preset.kinetics_intracranial_csf``, illustrative like the others).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .kinetics_model import COMPARTMENTS, COMPARTMENTS_INTRACRANIAL_CSF, KineticsModel

__all__ = ["Preset", "PRESETS", "csf_kinetics"]


@dataclass(frozen=True)
class Preset:
    """Everything species-specific about a phantom study.

    Attributes
    ----------
    name, species : str
        Preset key (``rat``, ``nhp``, ``human``) and a readable species name.
    species_description : str
        DICOM ``PatientSpeciesDescription`` (empty for humans).
    weight_kg : float
        ``PatientWeight``.
    fov_mm : tuple of 3 float
        SPECT field of view along x, y, z (mm); the grid is ``spect_shape``
        voxels across it.
    spect_shape : tuple of 3 int
        Default number of SPECT voxels along x, y, z (i, j, k).
    fov_centre_mm : tuple of 3 float
        LPS position of the centre of the field of view.
    times_h : tuple of float
        Default scan start times (h after injection).
    frame_duration_s : tuple of float
        Default acquisition wall time of each scan (s).
    injected_mbq : float
        Default injected activity (MBq) of the Tc-99m microdose.
    sensitivity_cps_per_mbq : float
        Default system volume sensitivity (counts per second per MBq). With the
        default activity and durations the hottest voxel holds about 40 000
        counts, so counts fit uint16 without a rescale slope.
    jitter_mm : float
        Scale of the seed-driven position jitter of organs.
    anatomy : dict
        Body-frame anatomy (see module docstring).
    kinetics : KineticsModel
        Compartment model of the tracer (decay-corrected fractions).
    kinetics_intracranial_csf : KineticsModel or None
        The same model with an intracranial CSF compartment between the
        cervical canal and the brain (used by ``intracranial_csf=True``).
    """

    name: str
    species: str
    species_description: str
    weight_kg: float
    fov_mm: tuple
    spect_shape: tuple
    fov_centre_mm: tuple
    times_h: tuple
    frame_duration_s: tuple
    injected_mbq: float
    sensitivity_cps_per_mbq: float
    jitter_mm: float
    anatomy: dict = field(default_factory=dict)
    kinetics: KineticsModel = field(default_factory=KineticsModel)
    kinetics_intracranial_csf: KineticsModel | None = None

    @property
    def spacing_mm(self) -> tuple:
        """Default SPECT voxel size along x, y, z."""
        return tuple(f / n for f, n in zip(self.fov_mm, self.spect_shape))


def csf_kinetics(*, up, back, clear, brain_in, brain_out, site_fraction, site_to_canal, site_to_blood,
                 lymph, liver, kidneys, renal, voids_h, liver_out=0.002, kidneys_out=0.004,
                 pertechnetate=1.0, intracranial=None) -> KineticsModel:
    """Build the compartment model of an intrathecal bolus (rates in 1/h).

    Parameters
    ----------
    up, back : float
        Rostral and caudal transfer between adjacent canal levels.
    clear : float
        Clearance of each canal level to blood (``remainder``).
    brain_in, brain_out : float
        Cervical canal to brain, and brain to blood.
    site_fraction : float
        Fraction of the dose left at the needle site at injection (the rest
        enters the lumbar canal).
    site_to_canal, site_to_blood : float
        Emptying of the injection site.
    lymph : float
        Drainage of each CSF compartment to lymph nodes.
    liver, kidneys, renal : float
        Uptake from blood by liver and kidneys, and renal excretion to bladder.
    voids_h : tuple of float
        Bladder voiding times (h).
    liver_out, kidneys_out : float
        Slow release from liver (to blood) and kidneys (to bladder).
    pertechnetate : float
        Scale of the free-pertechnetate uptake in thyroid, stomach, salivary glands.
    intracranial : dict, optional
        ``{"to_brain": k, "to_blood": k}``: add the ``csf_intracranial``
        compartment. The cervical canal then feeds it at ``brain_in`` instead
        of feeding the brain; it returns ``0.3 * back`` to the cervical
        canal, passes ``to_brain`` to the parenchyma, ``to_blood`` to
        ``remainder`` and ``lymph`` to lymph nodes; the brain's back-flow goes
        to it. Without it (default) the model is the one without
        intracranial CSF, rate for rate.
    """
    r: dict = {}
    ic = "csf_intracranial"
    chain = ("canal_lumbar", "canal_thoracic", "canal_cervical")
    for a, b in zip(chain[:-1], chain[1:]):
        r[(a, b)] = up
        r[(b, a)] = back
    if intracranial is None:
        r[("canal_cervical", "brain")] = brain_in
        r[("brain", "canal_cervical")] = 0.3 * back
    else:
        r[("canal_cervical", ic)] = brain_in
        r[(ic, "canal_cervical")] = 0.3 * back
        r[(ic, "brain")] = float(intracranial["to_brain"])
        r[("brain", ic)] = 0.3 * back
        r[(ic, "remainder")] = float(intracranial["to_blood"])
        r[(ic, "lymph_nodes")] = lymph
    r[("canal_lumbar", "canal_sacral")] = 0.4 * up
    r[("canal_sacral", "canal_lumbar")] = 0.5 * up
    for c in ("canal_sacral", "canal_lumbar", "canal_thoracic", "canal_cervical", "brain"):
        r[(c, "lymph_nodes")] = lymph
    for c in ("canal_sacral", "canal_lumbar", "canal_thoracic", "canal_cervical"):
        r[(c, "remainder")] = clear
    r[("brain", "remainder")] = brain_out
    r[("injection_site", "canal_lumbar")] = site_to_canal
    r[("injection_site", "remainder")] = site_to_blood
    r[("remainder", "liver")] = liver
    r[("remainder", "kidneys")] = kidneys
    r[("remainder", "bladder")] = renal
    r[("liver", "remainder")] = liver_out
    r[("kidneys", "bladder")] = kidneys_out
    r[("remainder", "thyroid")] = 0.004 * pertechnetate
    r[("thyroid", "remainder")] = 0.05
    r[("remainder", "stomach")] = 0.006 * pertechnetate
    r[("stomach", "remainder")] = 0.1
    r[("remainder", "salivary_glands")] = 0.005 * pertechnetate
    r[("salivary_glands", "remainder")] = 0.1
    r[("lymph_nodes", "remainder")] = 0.05
    r[("remainder", "skull")] = 0.001
    r[("remainder", "vertebrae")] = 0.002
    return KineticsModel(r, {"injection_site": site_fraction, "canal_lumbar": 1.0 - site_fraction},
                         tuple(voids_h), 0.9,
                         COMPARTMENTS if intracranial is None else COMPARTMENTS_INTRACRANIAL_CSF)


def _pair(c, s):
    """Two ellipsoids mirrored about x = 0."""
    return [((c[0], c[1], c[2]), s), ((-c[0], c[1], c[2]), s)]


_RAT = dict(
    length_mm=250.0,
    # (z, semi-axis x, semi-axis y) of the elliptical body cross-section
    body=[(0, 10, 9), (10, 20, 17), (40, 26, 21), (120, 27, 22), (170, 24, 20), (188, 17, 15),
          (200, 15, 14), (214, 14, 12.5), (230, 11, 9), (244, 6, 5.5), (250, 2, 3)],
    fat_mm=1.5,
    brain=((0, 3, 212), (7.5, 5.0, 11.0)),
    skull_mm=1.0,
    # canal centreline stations (z, x, y) and levels (z ranges, caudal to cranial)
    canal=[(8, 0, 12), (30, 0, 14), (80, 0, 16), (130, 0, 15), (170, 0, 12), (196, 0, 8), (212, 0, 5)],
    levels={"canal_sacral": (8, 30), "canal_lumbar": (30, 80), "canal_thoracic": (80, 160),
            "canal_cervical": (160, 212)},
    canal_radius_mm={"canal_sacral": 1.25, "canal_lumbar": 1.75, "canal_thoracic": 1.5, "canal_cervical": 1.75},
    arch_mm=1.2,
    vertebral_body_mm=(3.0, 2.5),
    vertebrae=dict(cervical=7, thoracic=13, lumbar=6, sacral=4, disc_mm=1.0),
    injection=dict(z=45.0, radius_mm=1.5),
    intracranial_csf=dict(ventricle_offset=(0.22, 0.05, 0.10), ventricle_semi=(0.12, 0.30, 0.14),
                          cisterna_semi=(1.6, 1.2, 1.4), cisterna_dorsal=1.0),
    organs={
        "liver": [((-4, -4, 135), (15, 11, 14))],
        "kidneys": _pair((9, 8, 110), (4.0, 3.5, 7.0)),
        "bladder": [((0, -10, 20), (5, 5, 6))],
        "stomach": [((10, -8, 122), (9, 7, 9))],
        "thyroid": _pair((3, -6, 182), (1.5, 1.5, 3.0)),
        "salivary_glands": _pair((5, -12, 192), (4, 3, 5)) + _pair((11, -2, 200), (2.5, 3, 5)),
        "lymph_nodes": _pair((8, 2, 184), (1.5, 1.5, 1.5)) + _pair((5, -3, 40), (1.5, 1.5, 1.5)),
    },
    lungs=_pair((10, -2, 165), (8, 13, 15)),
)

_NHP = dict(
    length_mm=450.0,
    body=[(0, 30, 25), (12, 50, 40), (40, 60, 48), (120, 58, 48), (200, 64, 52), (260, 66, 54),
          (290, 60, 48), (305, 42, 36), (325, 30, 30), (345, 34, 36), (365, 42, 44), (400, 46, 47),
          (425, 42, 42), (440, 30, 30), (450, 8, 8)],
    fat_mm=3.0,
    brain=((0, 5, 400), (26.0, 30.0, 21.0)),
    skull_mm=3.0,
    canal=[(15, 0, 30), (60, 0, 34), (150, 0, 38), (230, 0, 37), (290, 0, 30), (330, 0, 22), (380, 0, 12),
           (400, 0, 8)],
    levels={"canal_sacral": (15, 55), "canal_lumbar": (55, 140), "canal_thoracic": (140, 290),
            "canal_cervical": (290, 400)},
    canal_radius_mm={"canal_sacral": 2.5, "canal_lumbar": 3.5, "canal_thoracic": 3.0, "canal_cervical": 3.5},
    arch_mm=2.5,
    vertebral_body_mm=(8.0, 6.0),
    vertebrae=dict(cervical=7, thoracic=12, lumbar=7, sacral=None, disc_mm=2.5),
    injection=dict(z=85.0, radius_mm=4.0),
    intracranial_csf=dict(ventricle_offset=(0.22, 0.05, 0.10), ventricle_semi=(0.12, 0.30, 0.15),
                          cisterna_semi=(1.6, 1.2, 1.4), cisterna_dorsal=1.0),
    organs={
        "liver": [((-20, -8, 200), (33, 28, 25))],
        "kidneys": _pair((24, 22, 160), (10, 8, 20)),
        "bladder": [((0, -18, 35), (13, 11, 13))],
        "stomach": [((30, -12, 188), (15, 12, 16))],
        "thyroid": _pair((6, -12, 318), (2.5, 2.5, 6.0)),
        "salivary_glands": _pair((30, 2, 372), (5, 7, 9)) + _pair((13, -26, 360), (5, 5, 5)),
        "lymph_nodes": _pair((14, -4, 335), (3, 3, 3)) + _pair((12, -5, 65), (3, 3, 3)),
    },
    lungs=_pair((26, 0, 258), (18, 30, 30)),
)

_HUMAN = dict(
    length_mm=920.0,
    body=[(0, 160, 100), (100, 175, 110), (200, 160, 105), (300, 150, 105), (400, 158, 110),
          (500, 162, 110), (600, 172, 100), (640, 172, 90), (660, 120, 75), (680, 60, 60), (700, 60, 65),
          (720, 75, 90), (760, 78, 98), (820, 78, 100), (870, 70, 90), (900, 50, 65), (915, 25, 35),
          (920, 5, 8)],
    fat_mm=12.0,
    brain=((0, 5, 830), (68.0, 82.0, 58.0)),
    skull_mm=7.0,
    canal=[(90, 0, 75), (190, 0, 55), (300, 0, 60), (450, 0, 75), (600, 0, 65), (690, 0, 25), (772, 0, 15),
           (830, 0, 10)],
    levels={"canal_sacral": (90, 190), "canal_lumbar": (190, 300), "canal_thoracic": (300, 665),
            "canal_cervical": (665, 830)},
    canal_radius_mm={"canal_sacral": 5.0, "canal_lumbar": 8.0, "canal_thoracic": 7.0, "canal_cervical": 8.0},
    arch_mm=5.0,
    vertebral_body_mm=(22.0, 15.0),
    vertebrae=dict(cervical=7, thoracic=12, lumbar=5, sacral=None, disc_mm=7.0),
    injection=dict(z=230.0, radius_mm=7.0),
    intracranial_csf=dict(ventricle_offset=(0.22, 0.05, 0.10), ventricle_semi=(0.12, 0.32, 0.16),
                          cisterna_semi=(1.6, 1.2, 1.4), cisterna_dorsal=1.0),
    organs={
        "liver": [((-70, -15, 420), (90, 70, 58))],
        "kidneys": _pair((75, 40, 320), (30, 25, 50)),
        "bladder": [((0, -30, 110), (40, 35, 35))],
        "stomach": [((60, -40, 440), (45, 35, 45))],
        "thyroid": _pair((18, -25, 680), (8, 9, 22)),
        "salivary_glands": _pair((55, 10, 760), (12, 20, 25)) + _pair((35, -45, 720), (10, 10, 12)),
        "lymph_nodes": (_pair((40, -10, 700), (8, 8, 8)) + _pair((25, -10, 250), (8, 8, 8))
                        + _pair((60, -10, 140), (8, 8, 8))),
    },
    lungs=_pair((85, 0, 565), (60, 80, 95)),
)

# kinetic rates (1/h) of csf_kinetics, per preset
_RATES_RAT = dict(up=2.5, back=0.5, clear=0.5, brain_in=0.6, brain_out=0.6, site_fraction=0.12, site_to_canal=1.5,
                  site_to_blood=0.5, lymph=0.05, liver=0.12, kidneys=0.08, renal=0.25, voids_h=(5.0, 12.0))
_RATES_NHP = dict(up=0.9, back=0.3, clear=0.25, brain_in=0.3, brain_out=0.2, site_fraction=0.15, site_to_canal=0.8,
                  site_to_blood=0.2, lymph=0.02, liver=0.07, kidneys=0.05, renal=0.15, voids_h=(5.0, 12.0))
_RATES_HUMAN = dict(up=0.35, back=0.15, clear=0.06, brain_in=0.25, brain_out=0.04, site_fraction=0.15,
                    site_to_canal=0.5, site_to_blood=0.1, lymph=0.01, liver=0.05, kidneys=0.04, renal=0.12,
                    voids_h=(5.0, 12.0))

#: The three presets (``rat``, ``nhp``, ``human``).
PRESETS: dict[str, Preset] = {
    "rat": Preset(
        name="rat", species="rat", species_description="Rattus norvegicus", weight_kg=0.3,
        fov_mm=(96.6, 79.8, 277.2), spect_shape=(46, 38, 132), fov_centre_mm=(0.0, 10.0, -150.0),
        times_h=(0.5, 1.0, 2.0, 4.0, 6.0, 24.0), frame_duration_s=(900, 900, 1800, 1800, 1800, 1800),
        injected_mbq=20.0, sensitivity_cps_per_mbq=100.0, jitter_mm=1.5, anatomy=_RAT,
        kinetics=csf_kinetics(**_RATES_RAT),
        kinetics_intracranial_csf=csf_kinetics(**_RATES_RAT, intracranial=dict(to_brain=2.0, to_blood=0.8)),
    ),
    "nhp": Preset(
        name="nhp", species="cynomolgus monkey", species_description="Macaca fascicularis", weight_kg=4.0,
        fov_mm=(159.6, 134.4, 495.6), spect_shape=(38, 32, 118), fov_centre_mm=(0.0, 15.0, -350.0),
        times_h=(0.5, 1.0, 2.0, 4.0, 6.0, 24.0), frame_duration_s=(900, 900, 1800, 1800, 1800, 1800),
        injected_mbq=74.0, sensitivity_cps_per_mbq=30.0, jitter_mm=3.0, anatomy=_NHP,
        kinetics=csf_kinetics(**_RATES_NHP),
        kinetics_intracranial_csf=csf_kinetics(**_RATES_NHP, intracranial=dict(to_brain=1.0, to_blood=0.4)),
    ),
    "human": Preset(
        name="human", species="human", species_description="", weight_kg=70.0,
        fov_mm=(384.0, 264.0, 984.0), spect_shape=(64, 44, 164), fov_centre_mm=(0.0, 30.0, -600.0),
        times_h=(0.5, 1.0, 2.0, 4.0, 6.0, 24.0), frame_duration_s=(900, 900, 1800, 1800, 1800, 1800),
        injected_mbq=100.0, sensitivity_cps_per_mbq=25.0, jitter_mm=8.0, anatomy=_HUMAN,
        kinetics=csf_kinetics(**_RATES_HUMAN),
        kinetics_intracranial_csf=csf_kinetics(**_RATES_HUMAN, intracranial=dict(to_brain=0.8, to_blood=0.1)),
    ),
}
