"""Losses against Keras 3: values and gradients w.r.t. y_pred.

The reference numbers were computed offline with Keras 3.15.1 on the JAX backend (float64,
``jax.value_and_grad`` of ``keras.losses.<Class>(...)(y_true, y_pred)``) and are stored here as
literals; the tests never import Keras.
"""

import numpy as np
import pytest

from fastconv import losses

P = np.array([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9], [0.3, 0.3, 0.4], [0.0, 0.999999999, 1e-9]])
Z = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-2.0, 1.0, 0.0], [5.0, -3.0, 1.0]])
Y = np.array([0, 2, 1, 1])
T = np.eye(3)[Y]
B_P = np.array([[0.9, 0.2], [0.3, 1.0], [1e-9, 0.6]])
B_T = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
B_Z = np.array([[2.0, -1.0], [0.5, 30.0], [-4.0, 0.3]])
R_P = np.array([[0.5, -1.2, 3.0], [2.0, 0.1, -0.4]])
R_T = np.array([[0.0, -1.0, 1.0], [0.5, 0.5, 0.5]])
K_T = np.array([[0.2, 0.3, 0.5], [0.0, 0.6, 0.4]])
K_P = np.array([[0.1, 0.1, 0.8], [0.3, 1e-9, 0.7]])

CASES = {
    "scce": (lambda: losses.get("sparse_categorical_crossentropy"), Y, P),
    "scce_logits": (lambda: losses.SparseCategoricalCrossentropy(from_logits=True), Y, Z),
    "scce_ignore": (lambda: losses.SparseCategoricalCrossentropy(ignore_class=1), Y[:3], P[:3]),
    "cce": (lambda: losses.get("categorical_crossentropy"), T, P),
    "cce_ls": (lambda: losses.CategoricalCrossentropy(label_smoothing=0.1), T, P),
    "cce_logits_ls": (lambda: losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2), T, Z),
    "cce_unnorm": (lambda: losses.CategoricalCrossentropy(), T[:3], P[:3] * np.array([[2.0], [0.5], [1.5]])),
    "bce": (lambda: losses.get("binary_crossentropy"), B_T, B_P),
    "bce_ls": (lambda: losses.BinaryCrossentropy(label_smoothing=0.1), B_T, B_P),
    "bce_logits": (lambda: losses.BinaryCrossentropy(from_logits=True), B_T, B_Z),
    "bce_logits_ls": (lambda: losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.3), B_T, B_Z),
    "huber": (lambda: losses.get("huber"), R_T, R_P),
    "huber_d05": (lambda: losses.Huber(delta=0.5), R_T, R_P),
    "mae": (lambda: losses.get("mae"), R_T, R_P),
    "mse": (lambda: losses.get("mse"), R_T, R_P),
    "kld": (lambda: losses.get("kld"), K_T, K_P),
}

# name: (Keras value, Keras d value / d y_pred)
KERAS = {
    'scce': (0.4165020909806249, [[-0.10714285714285715, 0.25, 0.25], [0.25, 0.25, -0.02777777777777779], [0.25, -0.5833333333333334, 0.25], [-0.0, -0.0, -0.0]]),
    'scce_logits': (2.1796010701353667, [[-0.05360074135268103, 0.009778143317671864, 0.04382259803500917], [0.012327831789569121, 0.01362436117676026, -0.02595219296632939], [0.008779756739834933, -0.0736538718254397, 0.06487411508560477], [0.24542259820637616, -0.24991766989025901, 0.004495071683882887]]),
    'scce_ignore': (0.23101772979827928, [[-0.2142857142857143, 0.5, 0.5], [0.5, 0.5, -0.05555555555555558], [0.0, 0.0, 0.0]]),
    'cce': (0.4165020909806249, [[-0.10714285714285715, 0.25, 0.25], [0.25, 0.25, -0.02777777777777779], [0.25, -0.5833333333333334, 0.25], [-0.0, -0.0, -0.0]]),
    'cce_ls': (0.7575681381706905, [[-0.08333333333333337, 0.20833333333333334, 0.16666666666666669], [0.08333333333333334, 0.08333333333333334, -0.009259259259259245], [0.2222222222222222, -0.5277777777777778, 0.22916666666666666], [-0.0, -0.0, -0.0]]),
    'cce_logits_ls': (2.216267736802033, [[-0.020267408019347705, -0.006888523348994803, 0.027155931368342507], [-0.0043388348770975445, -0.003042305489906405, 0.0073811403670039355], [-0.007886909926831734, -0.04032053849210637, 0.048207448418938106], [0.2287559315397095, -0.2165843365569257, -0.012171594982783779]]),
    'cce_unnorm': (0.5553360879741649, [[-0.07142857142857145, 0.16666666666666666, 0.16666666666666666], [0.6666666666666666, 0.6666666666666666, -0.07407407407407407], [0.22222222222222224, -0.5185185185185187, 0.22222222222222224]]),
    'bce': (0.4081279784440994, [[-0.18518519070413378, 0.2083333395421505], [-0.5555555721124014, -0.0], [0.0, 0.416666679084301]]),
    'bce_ls': (0.6961858570575714, [[-0.092592595352067, 0.15625000465661285], [-0.5158730312472299, 0.0], [-0.0, 0.3819444558272759]]),
    'bce_logits': (0.2977953056494395, [[-0.01986715426244024, 0.04482357156417901], [-0.06292344667495568, -1.559603874619701e-14], [0.002997701749687065, 0.09574042232189671]]),
    'bce_logits_ls': (1.2277953326702118, [[0.005132846482617817, 0.019823570819120943], [-0.03792344592989763, 0.025000000745042494], [-0.022002298995371, 0.07074042157683863]]),
    'huber': (0.5216666758060455, [[0.0833333358168602, -0.033333334326744075, 0.1666666716337204], [0.1666666716337204, -0.06666666865348816, -0.15000000447034836]]),
    'huber_d05': (0.34166666865348816, [[0.0833333358168602, -0.033333334326744075, 0.0833333358168602], [0.0833333358168602, -0.06666666865348816, -0.0833333358168602]]),
    'mae': (0.9166666865348816, [[0.1666666716337204, -0.1666666716337204, 0.1666666716337204], [0.1666666716337204, -0.1666666716337204, -0.1666666716337204]]),
    'mse': (1.2516667246818542, [[0.1666666716337204, -0.06666666865348815, 0.6666666865348816], [0.5000000149011612, -0.13333333730697633, -0.3000000089406967]]),
    'kld': (4.686862758909249, [[-1.0, -1.5, -0.3125], [-1.6666666666666665e-07, -0.0, -0.28571428571428575]]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_value_and_gradient_match_keras(case):
    make, y_true, y_pred = CASES[case]
    value, grad = KERAS[case]
    loss = make()
    v, g = loss.value_and_gradient(y_true, y_pred)
    assert v == pytest.approx(value, rel=1e-6)
    np.testing.assert_allclose(g, np.array(grad), rtol=1e-6, atol=1e-12)
    assert loss(y_true, y_pred) == pytest.approx(value, rel=1e-6)


def test_sample_weight_matches_keras():
    # Keras: (N,) labels against a (N, 1) sigmoid output, weights per sample, sum / N
    bce = losses.BinaryCrossentropy()
    y, p, w = np.array([1.0, 0.0, 1.0]), np.array([[0.8], [0.4], [0.3]]), np.array([1.0, 2.0, 0.5])
    assert bce(y, p, sample_weight=w) == pytest.approx(0.6155937413374583, rel=1e-6)
    scce = losses.SparseCategoricalCrossentropy()
    assert scce(Y, P, sample_weight=np.array([1.0, 0.0, 2.0, 0.5])) == pytest.approx(0.6911551506476518, rel=1e-6)
    # the weighted gradient is the derivative of the weighted value
    _, g = bce.value_and_gradient(y, p, sample_weight=w)
    h = 1e-6
    for i in range(3):
        pp, pm = p.copy(), p.copy()
        pp[i, 0] += h
        pm[i, 0] -= h
        fd = (bce(y, pp, sample_weight=w) - bce(y, pm, sample_weight=w)) / (2 * h)
        assert g[i, 0] == pytest.approx(fd, rel=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_softmax_path_equals_from_logits(smoothing):
    # Fusion (softmax output, from_logits=False) gives the from_logits=True value and gradient.
    fused = losses.CategoricalCrossentropy(label_smoothing=smoothing)
    direct = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
    assert fused.fuses_softmax and not direct.fuses_softmax
    v1, g1 = fused.value_and_gradient_from_logits(T, Z)
    v2, g2 = direct.value_and_gradient(T, Z)
    assert v1 == pytest.approx(v2)
    np.testing.assert_allclose(g1, g2)


def test_names_and_round_trip():
    for name, cls in [
        ("bce", losses.BinaryCrossentropy), ("BinaryCrossentropy", losses.BinaryCrossentropy),
        ("mae", losses.MeanAbsoluteError), ("mean_absolute_error", losses.MeanAbsoluteError),
        ("huber", losses.Huber), ("kld", losses.KLDivergence), ("kl_divergence", losses.KLDivergence),
        ("mse", losses.MeanSquaredError),
    ]:
        assert type(losses.get(name)) is cls
    assert losses.serialize("categorical_crossentropy") == "categorical_crossentropy"
    for loss in [
        losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2),
        losses.Huber(delta=0.3),
        losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
    ]:
        back = losses.get(losses.serialize(loss))
        assert type(back) is type(loss) and back.get_config() == loss.get_config()
    assert losses.Huber().name == "huber_loss"  # Keras's default name


def test_per_pixel_binary_targets_and_shape_errors():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, size=(2, 3, 3, 1))
    t = (rng.uniform(size=(2, 3, 3)) > 0.5).astype(np.float32)  # (N, H, W) masks for a (N, H, W, 1) output
    bce = losses.get("binary_crossentropy")
    expected = -(t[..., None] * np.log(p) + (1 - t[..., None]) * np.log(1 - p)).mean()
    assert bce(t, p) == pytest.approx(expected)
    with pytest.raises(ValueError, match="same shape"):
        bce(np.zeros((2, 2)), np.zeros((2, 3)))
