"""Biomechanical simulation of the femur: finite elements (TetGen + scikit-fem) and a surrogate."""
