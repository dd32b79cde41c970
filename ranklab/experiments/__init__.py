"""Experiments: toy planted-update fits (here) and the reproduction of the papers' tables and
figures, in three steps: ``protocol`` (what is run) -> ``run`` (training it) -> ``results`` (what
the runs say); README.md in this folder lists every module."""
from .toy import PlantedFit, PlantedLayer, fit_planted

__all__ = ["PlantedFit", "PlantedLayer", "fit_planted"]
