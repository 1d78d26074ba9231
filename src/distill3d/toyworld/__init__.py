"""distill3d.toyworld"""
