"""Experiment recipes: toy planted-update fits and the papers' tables and figures."""
from .toy import PlantedFit, PlantedLayer, fit_planted

__all__ = ["PlantedFit", "PlantedLayer", "fit_planted"]
