"""distill3d.export: files a user keeps, all written atomically.

- ``ply``: 3D Gaussians in the reference 3DGS PLY layout (writer and tolerant reader)
- ``mesh``: marching cubes on a representation's density grid, coloured by ``color_at``
- ``gltf`` / ``obj``: a mesh as ``.glb`` (glTF 2.0) or ``.obj`` with vertex colours, both +y up
- ``images`` / ``video``: PNGs, multi-view grids, H.264 mp4 (gif fallback)
- ``views``: fixed-azimuth views and turntables through ``distill3d.scene.render``
- ``load``: find and load the representation saved in a run directory or file
"""
