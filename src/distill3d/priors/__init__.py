"""Diffusion priors behind one denoiser interface (``distill3d.priors.base.Prior``)."""
