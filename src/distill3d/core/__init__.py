"""Conventions and utilities every other layer uses. Imports nothing from the rest of distill3d."""
