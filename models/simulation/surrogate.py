"""Surrogate of the stance FE model: shape coefficients and load -> fields on the template.

Design. The FE problem is linear in the forces, so for one shape every stance load is
`F_hip * unit_hip + F_abd * unit_abd` (:mod:`models.simulation.femur`). The surrogate learns
only the shape dependence of the two unit responses and superposes them exactly:

1. training set: shapes sampled uniformly within +-`coeff_std_range` std of the femur shape
   model; one FE run per shape gives the unit stress `(2, n_vertices, 6)`, unit displacement
   `(2, n_vertices, 3)` on the template's vertices and the `(2, 2)` compliance;
2. reduced basis: PCA (POD) of the block-normalised unit responses, `n_basis` modes;
3. regression: ridge-linear in the shape coefficients (alpha by leave-one-out CV) plus a
   Gaussian process (ARD RBF kernel, length scales >= 1 std) on the linear residual, from
   shape coefficients to the modal coefficients;
4. ONNX graph: GP mean -> modes -> unit fields -> superposition with the load
   `[body_weight_kg, hip_force_bw, abductor_force_bw]` -> von Mises `(n_vertices,)` MPa,
   displacement `(n_vertices, 3)` mm and strain energy (J), in the shape model's frame.

Load ranges (params `simulation.surrogate`) bound the held-out evaluation; inside the graph the
load enters exactly, so the error comes from the shape regression and the FE meshes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.simulation import fe
from models.simulation.femur import UnitFields, combine, solve_stance
from models.simulation.loads import GRAVITY, load_case

logger = logging.getLogger(__name__)

INPUT_NAMES = ("shape_coefficients", "load")  # (1, n_components), (1, 3)
OUTPUT_NAMES = ("von_mises_mpa", "displacement_mm", "strain_energy_j")


@dataclass
class TrainingSet:
    """FE unit responses on the template vertices for sampled shapes.

    Attributes:
        coeffs: `(n_shapes, n_components)` standardised shape coefficients.
        stress: `(n_shapes, 2, n_vertices, 6)` MPa/N.
        displacement: `(n_shapes, 2, n_vertices, 3)` mm/N.
        compliance: `(n_shapes, 2, 2)` mm/N.
        fe_seconds: `(n_shapes,)` wall time per FE run.
        n_tets: `(n_shapes,)` tetrahedra per FE mesh.
    """

    coeffs: np.ndarray
    stress: np.ndarray
    displacement: np.ndarray
    compliance: np.ndarray
    fe_seconds: np.ndarray
    n_tets: np.ndarray

    def unit(self, i: int) -> UnitFields:
        return UnitFields(self.stress[i], self.displacement[i], self.compliance[i])

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **asdict(self))
        return path

    @classmethod
    def load(cls, path: Path) -> TrainingSet:
        with np.load(path) as d:
            return cls(**{k: d[k] for k in d.files})


def sample_coefficients(
    n: int, n_components: int, std_range: float, rng: np.random.Generator
) -> np.ndarray:
    """`(n, n_components)` coefficients, uniform in +-`std_range` (standardised units)."""
    return rng.uniform(-std_range, std_range, size=(n, n_components))


def sample_loads(n: int, sp: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """`(n, 3)` loads `[body_weight_kg, hip_force_bw, abductor_force_bw]`, uniform in ranges."""
    keys = ("body_weight_range_kg", "hip_force_bw_range", "abductor_force_bw_range")
    return np.stack([rng.uniform(*sp[k], size=n) for k in keys], axis=1)


def generate(shape_model, coeffs: np.ndarray, params: dict[str, Any], on_shape=None) -> TrainingSet:  # noqa: ANN001
    """Run the stance FE model on each shape instance `shape_model.mesh(coeffs[i])`."""
    case = load_case("stance", params["body_weight_kg"]["default"], params)
    stress, disp, comp, secs, tets = [], [], [], [], []
    for i, c in enumerate(coeffs):
        sol = solve_stance(shape_model.mesh(c), case, params, source=f"shape sample {i}")
        stress.append(sol.surface_unit.stress)
        disp.append(sol.surface_unit.displacement)
        comp.append(sol.surface_unit.compliance)
        secs.append(sol.seconds["total"])
        tets.append(len(sol.tets))
        if on_shape:
            on_shape(i)
    return TrainingSet(
        np.asarray(coeffs, float),
        np.stack(stress),
        np.stack(disp),
        np.stack(comp),
        np.asarray(secs),
        np.asarray(tets),
    )


@dataclass
class Surrogate:
    """Fitted surrogate (all arrays float64; exported to ONNX as float32).

    Attributes:
        x_train: `(n_train, n_components)` GP inputs (standardised shape coefficients).
        linear_w, linear_b: `(n_components, n_basis)`, `(n_basis,)` ridge part (normalised).
        alpha: `(n_train, n_basis)` GP weights (for normalised targets).
        length_scales: `(n_components,)` ARD RBF length scales.
        amplitude: RBF variance.
        z_mean, z_std: `(n_basis,)` normalisation of the modal coefficients.
        basis: `(n_basis, n_features)` PCA modes.
        mean: `(n_features,)` mean of the scaled unit responses.
        scales: `(3,)` block scales for stress, displacement, compliance.
        n_vertices: template vertices.
        params: load-case angles and ranges used for training.
    """

    x_train: np.ndarray
    linear_w: np.ndarray
    linear_b: np.ndarray
    alpha: np.ndarray
    length_scales: np.ndarray
    amplitude: float
    z_mean: np.ndarray
    z_std: np.ndarray
    basis: np.ndarray
    mean: np.ndarray
    scales: np.ndarray
    n_vertices: int
    params: dict[str, Any] = field(default_factory=dict)

    def unit_fields(self, coeffs: np.ndarray) -> UnitFields:
        """Predicted unit responses for one shape `(n_components,)` (numpy reference path)."""
        d = (np.asarray(coeffs, float)[None] - self.x_train) / self.length_scales
        k = self.amplitude * np.exp(-0.5 * (d**2).sum(axis=1))
        zn = np.asarray(coeffs, float) @ self.linear_w + self.linear_b + k @ self.alpha
        z = zn * self.z_std + self.z_mean
        y = z @ self.basis + self.mean
        return _unpack(y, self.scales, self.n_vertices)

    def predict(self, coeffs: np.ndarray, load: np.ndarray):  # noqa: ANN201
        """Fields for a shape and a load `[body_weight_kg, hip_force_bw, abductor_force_bw]`."""
        case = _case_from_load(load, self.params)
        return combine(self.unit_fields(coeffs), case)


def _features(ts: TrainingSet, scales: np.ndarray) -> np.ndarray:
    n = len(ts.coeffs)
    comp = np.stack(
        [
            ts.compliance[:, 0, 0],
            0.5 * (ts.compliance[:, 0, 1] + ts.compliance[:, 1, 0]),
            ts.compliance[:, 1, 1],
        ],
        axis=1,
    )
    return np.hstack(
        [
            ts.stress.reshape(n, -1) / scales[0],
            ts.displacement.reshape(n, -1) / scales[1],
            comp / scales[2],
        ]
    )


def _unpack(y: np.ndarray, scales: np.ndarray, nv: int) -> UnitFields:
    ns, nd = 2 * nv * 6, 2 * nv * 3
    stress = y[:ns].reshape(2, nv, 6) * scales[0]
    disp = y[ns : ns + nd].reshape(2, nv, 3) * scales[1]
    c = y[ns + nd :] * scales[2]
    return UnitFields(stress, disp, np.array([[c[0], c[1]], [c[1], c[2]]]))


def fit(ts: TrainingSet, params: dict[str, Any]) -> Surrogate:
    """Fit the reduced basis, the ridge part and the residual Gaussian process."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    from sklearn.linear_model import RidgeCV

    sp = params["surrogate"]
    scales = np.array(
        [
            np.sqrt(np.mean(ts.stress**2)),
            np.sqrt(np.mean(ts.displacement**2)),
            np.sqrt(np.mean(ts.compliance**2)),
        ]
    )
    y = _features(ts, scales)
    mean = y.mean(axis=0)
    _, s, vt = np.linalg.svd(y - mean, full_matrices=False)
    n_basis = int(min(sp["n_basis"], len(s)))
    basis = vt[:n_basis]
    z = (y - mean) @ basis.T
    # one common scale: noisy low-energy modes must not weigh as much as the leading ones
    z_mean, z_std = z.mean(axis=0), np.full(n_basis, z.std() + 1e-12)
    zn = (z - z_mean) / z_std
    n_comp = ts.coeffs.shape[1]

    # 1. ridge-linear part (the response is close to linear within +-2 std)
    lin = RidgeCV(alphas=np.logspace(-3, 2, 11)).fit(ts.coeffs, zn)
    residual = zn - lin.predict(ts.coeffs)

    # 2. smooth GP on the residual; length scales below 1 std would only fit FE mesh noise
    kernel = ConstantKernel(0.1, (1e-4, 1e2)) * RBF(np.full(n_comp, 3.0), (1.0, 1e3)) + (
        WhiteKernel(1e-2, (1e-3, 1.0))
    )
    gp = GaussianProcessRegressor(
        kernel, normalize_y=False, n_restarts_optimizer=2, random_state=int(sp["seed"])
    )
    gp.fit(ts.coeffs, residual)
    k = gp.kernel_
    energy = float((s[:n_basis] ** 2).sum() / (s**2).sum())
    logger.info("surrogate: ridge alpha %.3g, GP %s, basis energy %.4f", lin.alpha_, k, energy)
    stance = params["stance"]
    return Surrogate(
        x_train=ts.coeffs.copy(),
        linear_w=np.asarray(lin.coef_).reshape(n_basis, n_comp).T.copy(),
        linear_b=np.broadcast_to(np.asarray(lin.intercept_, float), (n_basis,)).copy(),
        alpha=np.asarray(gp.alpha_).reshape(len(ts.coeffs), -1),
        length_scales=np.atleast_1d(k.k1.k2.length_scale).astype(float),
        amplitude=float(k.k1.k1.constant_value),
        z_mean=z_mean,
        z_std=z_std,
        basis=basis,
        mean=mean,
        scales=scales,
        n_vertices=int(ts.stress.shape[2]),
        params={
            "hip_angle_deg": stance["hip_angle_deg"],
            "abductor_angle_deg": stance["abductor_angle_deg"],
            "n_basis": n_basis,
            "n_train": len(ts.coeffs),
            "basis_energy": energy,
            "ridge_alpha": float(lin.alpha_),
            "gp_kernel": str(k),
        },
    )


def _case_from_load(load: np.ndarray, params: dict[str, Any]):  # noqa: ANN202
    from models.simulation.loads import LoadCase

    bw, hip, abd = (float(x) for x in np.asarray(load).ravel()[:3])
    return LoadCase("stance", bw, hip, params["hip_angle_deg"], abd, params["abductor_angle_deg"])


# --- ONNX -------------------------------------------------------------------------------


def export_onnx(sur: Surrogate, path: Path) -> Path:
    """Export the surrogate (GP mean, modes, superposition, von Mises) as an ONNX graph."""
    import torch

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    module = _torch_module_class()(sur).eval()
    x = torch.zeros(1, sur.x_train.shape[1])
    load = torch.tensor([[70.0, 2.5, 1.5]])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module,
        (x, load),
        str(path),
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        dynamo=True,
        external_data=False,
    )
    return path


def _torch_module_class():  # noqa: ANN202
    """The torch module class (torch is imported lazily: only export needs it)."""
    import torch

    class TorchSurrogate(torch.nn.Module):
        def __init__(self, sur: Surrogate) -> None:
            super().__init__()
            f32 = torch.float32
            nv = sur.n_vertices
            # fold the block scales into the modes and the mean
            col_scale = np.concatenate(
                [
                    np.full(2 * nv * 6, sur.scales[0]),
                    np.full(2 * nv * 3, sur.scales[1]),
                    np.full(3, sur.scales[2]),
                ]
            )
            basis = sur.basis * col_scale * sur.z_std[:, None]
            mean = (sur.z_mean @ sur.basis + sur.mean) * col_scale
            self.nv = nv
            self.register_buffer("x_train", torch.tensor(sur.x_train, dtype=f32))
            self.register_buffer("lin_w", torch.tensor(sur.linear_w, dtype=f32))
            self.register_buffer("lin_b", torch.tensor(sur.linear_b, dtype=f32))
            self.register_buffer("inv_ls", torch.tensor(1.0 / sur.length_scales, dtype=f32))
            self.register_buffer("alpha", torch.tensor(sur.alpha * sur.amplitude, dtype=f32))
            self.register_buffer("basis", torch.tensor(basis, dtype=f32))
            self.register_buffer("mean", torch.tensor(mean, dtype=f32))

        def forward(self, coeffs, load):  # noqa: ANN001, ANN202
            nv = self.nv
            d = (coeffs[:, None, :] - self.x_train[None]) * self.inv_ls  # (b, n_train, k)
            kern = torch.exp(-0.5 * (d * d).sum(-1))  # (b, n_train)
            zn = coeffs @ self.lin_w + self.lin_b + kern @ self.alpha  # (b, n_basis)
            y = zn @ self.basis + self.mean  # (b, n_features)
            ns, nd = 2 * nv * 6, 2 * nv * 3
            stress = y[:, :ns].reshape(-1, 2, nv, 6)
            disp = y[:, ns : ns + nd].reshape(-1, 2, nv, 3)
            c = y[:, ns + nd :]  # (b, 3): c00, c01, c11 in mm/N
            weight = load[:, 0:1] * GRAVITY  # N per body weight
            fh = load[:, 1:2] * weight  # (b, 1)
            fa = load[:, 2:3] * weight
            s = fh[:, :, None] * stress[:, 0] + fa[:, :, None] * stress[:, 1]  # (b, nv, 6)
            u = fh[:, :, None] * disp[:, 0] + fa[:, :, None] * disp[:, 1]
            xx, yy, zz, yz, xz, xy = (s[..., i] for i in range(6))
            vm2 = 0.5 * ((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2) + 3.0 * (
                yz * yz + xz * xz + xy * xy
            )
            vm = torch.sqrt(torch.clamp(vm2, min=0.0))
            fh1, fa1 = fh[:, 0], fa[:, 0]
            energy = 0.5e-3 * (fh1 * fh1 * c[:, 0] + 2 * fh1 * fa1 * c[:, 1] + fa1 * fa1 * c[:, 2])
            return vm, u, energy

    return TorchSurrogate


@dataclass
class OnnxSurrogate:
    """An ONNX Runtime session of the exported surrogate."""

    path: Path
    session: Any
    providers: list[str]

    @classmethod
    def open(cls, path: Path) -> OnnxSurrogate:
        from models.onnx_runtime import make_session

        info = make_session(path, intra_op_threads=2)
        return cls(Path(path), info.session, info.providers)

    def run(self, coeffs: np.ndarray, load: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """von Mises `(n_vertices,)` MPa, displacement `(n_vertices, 3)` mm, energy J."""
        n_in = self.session.get_inputs()[0].shape[1]
        x = np.zeros((1, n_in), np.float32)
        c = np.asarray(coeffs, np.float32).ravel()[:n_in]
        x[0, : len(c)] = c
        vm, u, e = self.session.run(
            None, {"shape_coefficients": x, "load": np.asarray(load, np.float32).reshape(1, 3)}
        )
        return vm[0].astype(float), u[0].astype(float), float(e[0])


# --- evaluation ---------------------------------------------------------------------------


@dataclass
class SurrogateMetrics:
    """Held-out error of the surrogate against FE (von Mises on the template vertices)."""

    n_train: int
    n_test: int
    n_basis: int
    rel_l2_von_mises: list[float]
    rel_l2_von_mises_mean: float
    rel_l2_von_mises_max: float
    peak_error_rel: list[float]
    peak_error_rel_mean: float
    displacement_rel_l2_mean: float
    strain_energy_rel_error_mean: float
    onnx_parity_max_abs_mpa: float
    onnx_ms_median: float
    fe_seconds_mean: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    sur: Surrogate, onnx: OnnxSurrogate, test: TrainingSet, loads: np.ndarray
) -> SurrogateMetrics:
    """Compare ONNX surrogate predictions with FE on held-out shapes and random loads."""
    rel, peak, drel, erel, parity, times = [], [], [], [], [], []
    for i in range(len(test.coeffs)):
        case = _case_from_load(loads[i], sur.params)
        ref = combine(test.unit(i), case)
        t = time.perf_counter()
        vm, u, e = onnx.run(test.coeffs[i], loads[i])
        times.append(1e3 * (time.perf_counter() - t))
        rel.append(float(np.linalg.norm(vm - ref.von_mises) / np.linalg.norm(ref.von_mises)))
        peak.append(float(abs(vm.max() - ref.von_mises.max()) / ref.von_mises.max()))
        drel.append(float(np.linalg.norm(u - ref.displacement) / np.linalg.norm(ref.displacement)))
        erel.append(abs(e - ref.strain_energy_j) / ref.strain_energy_j)
        np_vm = fe.von_mises(combine(sur.unit_fields(test.coeffs[i]), case).stress)
        parity.append(float(np.abs(np_vm - vm).max()))
    for _ in range(20):  # warm timing
        t = time.perf_counter()
        onnx.run(test.coeffs[0], loads[0])
        times.append(1e3 * (time.perf_counter() - t))
    return SurrogateMetrics(
        n_train=int(sur.params["n_train"]),
        n_test=len(test.coeffs),
        n_basis=int(sur.params["n_basis"]),
        rel_l2_von_mises=rel,
        rel_l2_von_mises_mean=float(np.mean(rel)),
        rel_l2_von_mises_max=float(np.max(rel)),
        peak_error_rel=peak,
        peak_error_rel_mean=float(np.mean(peak)),
        displacement_rel_l2_mean=float(np.mean(drel)),
        strain_energy_rel_error_mean=float(np.mean(erel)),
        onnx_parity_max_abs_mpa=float(np.max(parity)),
        onnx_ms_median=float(np.median(times)),
        fe_seconds_mean=float(np.mean(test.fe_seconds)),
    )


def save_metrics(metrics: SurrogateMetrics, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics.to_dict(), indent=2), encoding="utf-8")
    return path
