"""Central finite differences shared by the tests (tests/ is on sys.path under pytest)."""
import numpy as np


def numeric_grad(f, a, eps=1e-6):
    """d f() / d a by central differences, perturbing `a` in place one element at a time."""
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g
