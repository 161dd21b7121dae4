from .neuraxis.stage import NeuraxisProfile, profile_neuraxis
from .resolve import StudyRegions, add_auto_regions, resolve_regions
