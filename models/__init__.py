"""The science: segmentation, meshing, shape and population models, fitting, simulation."""
