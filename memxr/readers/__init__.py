"""Readers of the raw formats (THINGS-fMRI, TVSD, THINGS tables).

Readers return lazy, labeled cubes or tables; they never import analyses.
"""
