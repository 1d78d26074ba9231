"""distill3d.pipeline"""
