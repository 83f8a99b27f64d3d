"""Checks: each turns a :class:`gisgrid.model.Town` into rows of the one findings table.

``coverage`` (area, roads, points), ``responsibility`` (grids, rivers, staffing) and
``sensitive`` (rules for must-check points and sensitive sections).
"""
