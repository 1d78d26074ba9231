"""A local web viewer (viser, the optional extra ``view``): the asset drawn in the browser, the run's views,
judge scores and curves beside it, and live updates during ``generate --view``.

``content`` turns a representation into what the browser draws (Gaussian splats, or a coloured point
cloud of the mesh of a representation that is no set of Gaussians); ``panels`` reads a run directory;
``server`` wraps viser (imported lazily); ``live`` is the preview callback of ``generate --view``.
"""
