"""Write small saved models with the current fastconv code (the format lock for issue 11)."""
import sys, os, json
import numpy as np
import fastconv
from fastconv import layers as L, initializers

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
initializers.set_seed(0)
L.reset_name_counters()
rng = np.random.default_rng(0)

# Sequential: conv + BatchNorm + ReLU + pool + dense softmax; adam; trained one epoch (moving stats move)
seq = fastconv.Sequential([
    L.Conv2D(4, 3, padding="same", input_shape=(6, 6, 2), kernel_regularizer="l2"),
    L.BatchNormalization(), L.Activation("relu"), L.MaxPooling2D(), L.Flatten(),
    L.Dense(3, activation="softmax")], name="seq_fixture")
seq.compile(optimizer=fastconv.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy",
            metrics=["accuracy"])
xs = rng.standard_normal((16, 6, 6, 2)).astype("float32")
ys = rng.integers(0, 3, 16)
seq.fit(xs, ys, epochs=1, batch_size=8, verbose=0, seed=0)
seq.save(os.path.join(out, "sequential_v1.npz"))
seq.save_weights(os.path.join(out, "sequential_v1.weights.npz"))

# Functional: two inputs, shared Dense, BatchNorm, Add, two outputs with loss weights and per-output metrics
a = fastconv.Input((5,), name="in_a")
b = fastconv.Input((5,), name="in_b")
shared = L.Dense(4, name="shared")
h = L.Add(name="add")([shared(a), shared(b)])
h = L.BatchNormalization(name="bn")(L.Reshape((1, 1, 4), name="rs")(h))
h = L.Flatten(name="flat")(L.Activation("relu", name="act")(h))
cls = L.Dense(3, activation="softmax", name="cls")(h)
reg = L.Dense(1, name="reg")(h)
fun = fastconv.Model([a, b], [cls, reg], name="fun_fixture")
fun.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
            metrics={"cls": ["accuracy"]})
xa = rng.standard_normal((16, 5)).astype("float32")
xb = rng.standard_normal((16, 5)).astype("float32")
yc = rng.integers(0, 3, 16)
yr = rng.standard_normal((16, 1)).astype("float32")
fun.fit([xa, xb], [yc, yr], epochs=1, batch_size=8, verbose=0, seed=0)
fun.save(os.path.join(out, "functional_v1.npz"))

# Expected outputs and evaluations, to check the reload
np.savez(os.path.join(out, "expected_v1.npz"),
         seq_x=xs, seq_y=ys, seq_pred=seq.predict(xs), seq_eval=np.array(seq.evaluate(xs, ys, verbose=0)),
         fun_xa=xa, fun_xb=xb, fun_yc=yc, fun_yr=yr,
         fun_pred_cls=fun.predict([xa, xb])[0], fun_pred_reg=fun.predict([xa, xb])[1],
         fun_eval=np.array(fun.evaluate([xa, xb], [yc, yr], verbose=0)))
print(seq.evaluate(xs, ys, verbose=0), fun.evaluate([xa, xb], [yc, yr], verbose=0))
