"""Optimizers step by step against Keras 3: four updates of two weights from each optimizer (with and
without momentum, Nesterov, AMSGrad, centering, weight decay, each kind of clipping and a schedule),
compared with the weights Keras 3.15 (JAX backend, float32) produced for the same gradients. The
numbers were computed offline with Keras and are stored here; the tests do not import Keras."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import optimizers as O
from fastconv.optimizers import schedules as S


def _grads(t):
    a = (np.sin(np.arange(3) * 1.3 + t) * (1.5 if t % 2 else 0.4)).astype("float32")
    b = (np.cos(np.arange(4) * 0.7 - t) * (2.0 if t % 2 else 0.3)).reshape(2, 2).astype("float32")
    return [a, b]


W0 = [np.array([0.5, -0.3, 0.8], "float32"), np.array([[0.1, -0.6], [0.9, 0.25]], "float32")]

CASES = {
    "sgd": lambda: O.SGD(0.1),
    "sgd_momentum": lambda: O.SGD(0.1, momentum=0.9),
    "sgd_nesterov": lambda: O.SGD(0.1, momentum=0.9, nesterov=True),
    "sgd_weight_decay": lambda: O.SGD(0.1, weight_decay=0.05),
    "sgd_clipnorm": lambda: O.SGD(0.1, clipnorm=0.5),
    "sgd_clipvalue": lambda: O.SGD(0.1, clipvalue=0.3),
    "sgd_global_clipnorm": lambda: O.SGD(0.1, momentum=0.5, global_clipnorm=0.5),
    "rmsprop": lambda: O.RMSprop(),
    "rmsprop_momentum_centered": lambda: O.RMSprop(0.01, momentum=0.9, centered=True),
    "rmsprop_rho_wd": lambda: O.RMSprop(0.01, rho=0.8, weight_decay=0.1),
    "adam": lambda: O.Adam(0.01),
    "adam_amsgrad": lambda: O.Adam(0.01, amsgrad=True),
    "adam_weight_decay_clipnorm": lambda: O.Adam(0.01, weight_decay=0.1, clipnorm=1.0),
    "adamw": lambda: O.AdamW(0.01),
    "adamw_amsgrad": lambda: O.AdamW(0.01, weight_decay=0.1, amsgrad=True),
    "adagrad": lambda: O.Adagrad(0.1),
    "adagrad_init": lambda: O.Adagrad(0.1, initial_accumulator_value=0.5, clipvalue=1.0),
    "adadelta": lambda: O.Adadelta(1.0),
    "adadelta_rho": lambda: O.Adadelta(0.5, rho=0.9, epsilon=1e-6),
    "adamax": lambda: O.Adamax(0.01),
    "adamax_wd": lambda: O.Adamax(0.02, beta_1=0.8, weight_decay=0.05),
    "nadam": lambda: O.Nadam(0.01),
    "nadam_global_clipnorm": lambda: O.Nadam(0.01, global_clipnorm=1.0),
    "sgd_exponential_decay": lambda: O.SGD(S.ExponentialDecay(0.1, 2, 0.5, staircase=True), momentum=0.9),
    "adam_cosine_warmup": lambda: O.Adam(S.CosineDecay(0.01, 3, alpha=0.1, warmup_target=0.02, warmup_steps=2)),
    "adamw_piecewise": lambda: O.AdamW(S.PiecewiseConstantDecay([1, 2], [0.02, 0.01, 0.005])),
}

# Keras 3.15.1 (JAX, float32): the weights after each of the four steps, rounded to 8 decimals.
KERAS_STEPS = {
    'sgd': [[[0.5, -0.33854234, 0.77937996], [[0.07, -0.62294531], [0.89490098, 0.26514539]]], [[0.37377936, -0.45039812, 0.84575802], [[-0.03806046, -0.81401265], [0.71068877, 0.17442617]]], [[0.33740747, -0.44408828, 0.88550568], [[-0.02557605, -0.82203764], [0.6859287, 0.14457604]]], [[0.31623948, -0.30666339, 0.98019564], [[0.17242245, -0.68878245], [0.69176859, 0.02025405]]]],
    'sgd_momentum': [[[0.5, -0.33854234, 0.77937996], [[0.07, -0.62294531], [0.89490098, 0.26514539]]], [[0.37377936, -0.4850862, 0.8272], [[-0.06506046, -0.83466339], [0.70609969, 0.18805701]]], [[0.22380888, -0.61066586, 0.90998566], [[-0.17413047, -1.0332346], [0.51141846, 0.08882734]]], [[0.06766745, -0.58626264, 1.07918274], [[-0.07429496, -1.07869351], [0.34204525, -0.12480135]]]],
    'sgd_nesterov': [[[0.5, -0.37323043, 0.76082194], [[0.043, -0.64359605], [0.89031184, 0.27877623]]], [[0.26018077, -0.61697567, 0.87023807], [[-0.18661487, -1.02520967], [0.53617847, 0.11867747]]], [[0.08883545, -0.72368753, 0.98449278], [[-0.27229345, -1.21194875], [0.3362053, -0.00047936]]], [[-0.07285982, -0.56429976, 1.23146009], [[0.01555702, -1.11960649], [0.18960932, -0.31706715]]]],
    'sgd_weight_decay': [[[0.4975, -0.33704233, 0.77537996], [[0.0695, -0.61994529], [0.89040101, 0.26389539]]], [[0.36879185, -0.4472129, 0.83788109], [[-0.03890796, -0.80791283], [0.70173681, 0.1718567]]], [[0.330576, -0.438667, 0.87343931], [[-0.02622902, -0.81189823], [0.67346805, 0.14114729]]], [[0.30775514, -0.29904878, 0.96376216], [[0.17190063, -0.67458355], [0.67594057, 0.01611955]]]],
    'sgd_clipnorm': [[[0.5, -0.33854234, 0.77937996], [[0.07, -0.62294531], [0.89490098, 0.26514539]]], [[0.46517938, -0.36940011, 0.79769176], [[0.05202463, -0.65472847], [0.86425811, 0.25005466]]], [[0.43165427, -0.36358416, 0.83432841], [[0.06450903, -0.66275346], [0.83949804, 0.22020453]]], [[0.42536274, -0.32273877, 0.86247218], [[0.10128901, -0.63800013], [0.84058285, 0.19711062]]]],
    'sgd_clipvalue': [[[0.5, -0.33000001, 0.77937996], [[0.07, -0.62294531], [0.89490098, 0.26514539]]], [[0.47, -0.36000001, 0.80937994], [[0.04, -0.65294528], [0.86490095, 0.23514539]]], [[0.44, -0.35369018, 0.83937991], [[0.0524844, -0.66097027], [0.84014088, 0.20529526]]], [[0.418832, -0.32369018, 0.86937988], [[0.08248441, -0.63097024], [0.84598076, 0.17529526]]]],
    'sgd_global_clipnorm': [[[0.5, -0.33215183, 0.78279889], [[0.07497414, -0.61914086], [0.89574641, 0.26263422]]], [[0.48201957, -0.36416185, 0.78365403], [[0.04706775, -0.65592927], [0.86737818, 0.25602815]]], [[0.44640869, -0.37554869, 0.813173], [[0.04225193, -0.68019694], [0.8350721, 0.23087774]]], [[0.42526877, -0.35959437, 0.84284842], [[0.07103354, -0.67133987], [0.819839, 0.19871883]]]],
    'rmsprop': [[[0.5, -0.30316228, 0.79683775], [[0.09683774, -0.60316229], [0.89683831, 0.25316221]]], [[0.49683774, -0.30616805, 0.79987103], [[0.09377975, -0.60630423], [0.89367712, 0.25003886]]], [[0.49591866, -0.30598959, 0.80150884], [[0.0941496, -0.60644317], [0.89323366, 0.24901403]]], [[0.49536359, -0.30348635, 0.80401576], [[0.09696501, -0.60451514], [0.89334387, 0.24642688]]]],
    'rmsprop_momentum_centered': [[[0.5, -0.33333322, 0.76666713], [[0.06666687, -0.63333303], [0.86667377, 0.28333253]]], [[0.46666667, -0.39603281, 0.76775175], [[0.00357465, -0.69684911], [0.80326593, 0.28093657]]], [[0.42673519, -0.45055357, 0.78615105], [[-0.0493002, -0.75549352], [0.74146736, 0.26787987]]], [[0.38471285, -0.47456512, 0.83075005], [[-0.06844535, -0.78895152], [0.68701148, 0.22724617]]]],
    'rmsprop_rho_wd': [[[0.49950001, -0.32206067, 0.77683944], [[0.07753938, -0.62176061], [0.87674147, 0.27211043]]], [[0.47663984, -0.34310746, 0.79760712], [[0.05576022, -0.64337164], [0.85351092, 0.24972284]]], [[0.46930626, -0.34141907, 0.80893034], [[0.05848585, -0.64377117], [0.84933543, 0.24182768]]], [[0.46446151, -0.32260948, 0.82650334], [[0.07879262, -0.62849057], [0.84936148, 0.22265044]]]],
    'adam': [[[0.5, -0.30999985, 0.79000026], [[0.09000017, -0.60999984], [0.89000064, 0.25999972]]], [[0.49255872, -0.31921744, 0.79512], [[0.08103825, -0.61818659], [0.88237691, 0.25376275]]], [[0.48526204, -0.32599217, 0.80172753], [[0.07486033, -0.62477583], [0.87568516, 0.24720432]]], [[0.47843593, -0.32521024, 0.80965954], [[0.07740673, -0.6259045], [0.87038904, 0.23931929]]]],
    'adam_amsgrad': [[[0.5, -0.30999985, 0.79000026], [[0.09000017, -0.60999984], [0.89000064, 0.25999972]]], [[0.49255872, -0.31921744, 0.79512], [[0.08103825, -0.61818659], [0.88237691, 0.25376275]]], [[0.48526204, -0.32599217, 0.80172753], [[0.07486033, -0.62477583], [0.87568516, 0.24720432]]], [[0.47843593, -0.32521024, 0.80965954], [[0.07740673, -0.6259045], [0.87038904, 0.23931929]]]],
    'adam_weight_decay_clipnorm': [[[0.49950001, -0.30969986, 0.78920025], [[0.08990017, -0.60939986], [0.88910067, 0.25974974]]], [[0.49155927, -0.31925058, 0.79160988], [[0.07980406, -0.61806405], [0.88024062, 0.25584251]]], [[0.48301116, -0.32597274, 0.79700506], [[0.07389762, -0.62531817], [0.87125814, 0.24924245]]], [[0.47509214, -0.32515422, 0.80389303], [[0.07605471, -0.62648469], [0.86394393, 0.24120454]]]],
    'adamw': [[[0.49998, -0.30998784, 0.78996825], [[0.08999617, -0.60997581], [0.88996464, 0.25998974]]], [[0.49251872, -0.31919304, 0.7950564], [[0.08103065, -0.61813819], [0.88230532, 0.25374237]]], [[0.48520234, -0.325955, 0.80163211], [[0.07484949, -0.62470269], [0.87557828, 0.24717377]]], [[0.47835684, -0.32516006, 0.80953205], [[0.07739289, -0.62580639], [0.87024713, 0.23927885]]]],
    'adamw_amsgrad': [[[0.49950001, -0.30969986, 0.78920025], [[0.08990017, -0.60939986], [0.88910067, 0.25974974]]], [[0.49155924, -0.31860775, 0.79353076], [[0.08084835, -0.61697721], [0.88058782, 0.25325301]]], [[0.483771, -0.32506385, 0.79934478], [[0.07458958, -0.62294948], [0.87301546, 0.24644132]]], [[0.47646111, -0.32395688, 0.80647743], [[0.07706139, -0.62345523], [0.86684632, 0.23830986]]]],
    'adagrad': [[[0.5, -0.37730899, 0.74537975], [[0.0311753, -0.65872824], [0.88408113, 0.29319531]]], [[0.402998, -0.4686473, 0.83230466], [[-0.06156401, -0.75670093], [0.78555942, 0.19991963]]], [[0.37607768, -0.46350169, 0.87847573], [[-0.05091066, -0.7608124], [0.77243167, 0.17057911]]], [[0.36059919, -0.38888764, 0.95246738], [[0.0351461, -0.70442855], [0.77552652, 0.09318914]]]],
    'adagrad_init': [[[0.5, -0.34785926, 0.7720049], [[0.06094333, -0.63086516], [0.89280754, 0.27094379]]], [[0.41835034, -0.42574337, 0.83895028], [[-0.01836183, -0.71111858], [0.81122857, 0.19274732]]], [[0.38988167, -0.42083493, 0.87615925], [[-0.00850922, -0.71754557], [0.7914294, 0.16782926]]], [[0.37353608, -0.35943475, 0.94249243], [[0.05344163, -0.65503442], [0.79609412, 0.10374564]]]],
    'adadelta': [[[0.5, -0.30141422, 0.79858583], [[0.09858581, -0.6014142], [0.89858633, 0.25141415]]], [[0.49858579, -0.30331016, 0.80049998], [[0.09665525, -0.60340065], [0.89658743, 0.24944016]]], [[0.49801877, -0.30316019, 0.80189401], [[0.09696919, -0.60352039], [0.89620376, 0.24855749]]], [[0.49767584, -0.30107605, 0.80425793], [[0.0993693, -0.60190058], [0.89629567, 0.24624397]]]],
    'adadelta_rho': [[[0.5, -0.30158108, 0.79841906], [[0.09841895, -0.60158104], [0.89842188, 0.2515808]]], [[0.49841887, -0.30370644, 0.80056375], [[0.09625669, -0.60380262], [0.89618874, 0.24937251]]], [[0.497769, -0.30353466, 0.80214739], [[0.09661575, -0.60393935], [0.89575136, 0.24836706]]], [[0.4973698, -0.30121058, 0.80479717], [[0.09926606, -0.60211176], [0.89585704, 0.24578977]]]],
    'adamax': [[[0.5, -0.31, 0.79000002], [[0.09, -0.61000001], [0.88999999, 0.25999999]]], [[0.49473685, -0.31689534, 0.79379171], [[0.0834218, -0.61583203], [0.88460571, 0.25552765]]], [[0.4903481, -0.32104227, 0.79839849], [[0.07969356, -0.61967081], [0.88070208, 0.2514874]]], [[0.48674378, -0.32052591, 0.80359435], [[0.08115975, -0.62036401], [0.87802315, 0.24649075]]]],
    'adamax_wd': [[[0.49950001, -0.3197, 0.77920002], [[0.0799, -0.61940002], [0.87910002, 0.26975]]], [[0.48788941, -0.33355427, 0.78677064], [[0.06624123, -0.63095921], [0.86686379, 0.25985312]]], [[0.47847325, -0.34113121, 0.79582971], [[0.05910114, -0.63786739], [0.85818475, 0.25120628]]], [[0.47094658, -0.33826831, 0.80636829], [[0.06326681, -0.63748515], [0.85237086, 0.24013716]]]],
    'nadam': [[[0.5, -0.31062788, 0.78937215], [[0.08937213, -0.61062789], [0.88937211, 0.26062787]]], [[0.48978332, -0.32052255, 0.79891551], [[0.07933461, -0.62085772], [0.87913936, 0.25066921]]], [[0.48599896, -0.3210142, 0.80473441], [[0.07949074, -0.62224609], [0.87684476, 0.24668527]]], [[0.48307601, -0.31310609, 0.81405896], [[0.08887273, -0.61662894], [0.87616408, 0.23710592]]]],
    'nadam_global_clipnorm': [[[0.5, -0.31062788, 0.78937215], [[0.08937213, -0.61062789], [0.88937211, 0.26062787]]], [[0.48978332, -0.31769577, 0.79574829], [[0.08155001, -0.62032312], [0.87913358, 0.2521764]]], [[0.48157984, -0.31749004, 0.80449462], [[0.08342471, -0.62284279], [0.87374961, 0.24438396]]], [[0.47879222, -0.31089404, 0.81112605], [[0.09213292, -0.6173355], [0.87281376, 0.2359724]]]],
    'sgd_exponential_decay': [[[0.5, -0.33854234, 0.77937996], [[0.07, -0.62294531], [0.89490098, 0.26514539]]], [[0.37377936, -0.4850862, 0.8272], [[-0.06506046, -0.83466339], [0.70609969, 0.18805701]]], [[0.24199483, -0.61382079, 0.8901118], [[-0.18037267, -1.02922213], [0.52379847, 0.1037524]]], [[0.11280476, -0.66096944, 0.99407744], [[-0.18515441, -1.13769734], [0.36264735, -0.03428274]]]],
    'adam_cosine_warmup': [[[0.5, -0.30999985, 0.79000026], [[0.09000017, -0.60999984], [0.89000064, 0.25999972]]], [[0.48883808, -0.32382622, 0.79767984], [[0.07655729, -0.62228], [0.87856501, 0.25064427]]], [[0.47424468, -0.3373757, 0.81089485], [[0.06420144, -0.63545847], [0.86518151, 0.23752742]]], [[0.4636642, -0.33616373, 0.8231895], [[0.06814835, -0.63720793], [0.85697252, 0.22530563]]]],
    'adamw_piecewise': [[[0.49996001, -0.31997573, 0.77993643], [[0.07999235, -0.61995161], [0.87992936, 0.26997945]]], [[0.48503748, -0.33838528, 0.79011345], [[0.0620621, -0.63627559], [0.86461151, 0.25748393]]], [[0.47772139, -0.34514648, 0.79668939], [[0.05588169, -0.64283937], [0.85788518, 0.2509152]]], [[0.47429878, -0.34474862, 0.80063951], [[0.05715377, -0.64339083], [0.85521996, 0.24696767]]]],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_steps_match_keras(name):
    opt = CASES[name]()
    ws = [w.copy() for w in W0]
    for t, expected in enumerate(KERAS_STEPS[name]):
        opt.apply([(f"w{i}", w, g) for i, (w, g) in enumerate(zip(ws, _grads(t)))])
        for w, e in zip(ws, expected):
            assert w.dtype == np.float32
            np.testing.assert_allclose(w, np.array(e), rtol=2e-5, atol=2e-6, err_msg=f"{name} step {t + 1}")
    assert opt.iterations == 4


def test_config_round_trips_with_schedule():
    for name, make in CASES.items():
        opt = make()
        back = O.deserialize(O.serialize(opt))
        assert type(back) is type(opt)
        assert back.get_config() == opt.get_config(), name


# Keras 3.15.1 defaults of optimizers.get(name), read offline from get_config().
KERAS_DEFAULTS = {
    "sgd": ("SGD", {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False}),
    "rmsprop": ("RMSprop", {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False}),
    "adam": ("Adam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}),
    "adamw": ("AdamW", {"learning_rate": 0.001, "weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999,
                        "epsilon": 1e-7, "amsgrad": False}),
    "adagrad": ("Adagrad", {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7}),
    "adadelta": ("Adadelta", {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7}),
    "adamax": ("Adamax", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
    "nadam": ("Nadam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
}


@pytest.mark.parametrize("name", sorted(KERAS_DEFAULTS))
def test_string_identifiers_and_defaults(name):
    cls_name, defaults = KERAS_DEFAULTS[name]
    opt = O.get(name)
    assert type(opt).__name__ == cls_name
    assert O.get(name.upper()).__class__ is type(opt)
    config = opt.get_config()
    for key, value in defaults.items():
        assert config[key] == pytest.approx(value), key
    for key in ("clipnorm", "clipvalue", "global_clipnorm"):
        assert config[key] is None
    assert config["weight_decay"] == defaults.get("weight_decay")


def test_lr_is_refused_naming_learning_rate():
    # Keras 3 refuses `lr` ("Argument(s) not recognized"); fastconv refuses it too and names the fix.
    with pytest.raises(ValueError, match=r"learning_rate=0\.1"):
        O.SGD(lr=0.1)
    with pytest.raises(ValueError, match="not recognized"):
        O.Adam(bogus=1)
    with pytest.warns(UserWarning, match="decay"):
        O.SGD(0.1, decay=0.01)  # Keras 3 warns and ignores
    with pytest.raises(ValueError, match="Only one of"):
        O.SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        O.AdamW(weight_decay=None)
    with pytest.raises(NotImplementedError, match="use_ema"):
        O.Adam(use_ema=True)
    O.Adam(use_ema=False, gradient_accumulation_steps=None)  # Keras configs at their defaults load


def test_learning_rate_is_a_settable_float():
    opt = O.Adam(0.01)
    assert isinstance(opt.learning_rate, float) and opt.learning_rate == 0.01
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5 and opt.get_config()["learning_rate"] == 0.5
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -1.0


def test_callable_learning_rate_with_or_without_the_step():
    opt = O.SGD(lambda step: 0.1 / (1 + step))
    w = np.zeros(1, np.float32)
    for _ in range(2):
        opt.apply([("w", w, np.ones(1, np.float32))])
    assert w[0] == pytest.approx(-(0.1 + 0.05))
    assert O.SGD(lambda: 0.3).learning_rate == pytest.approx(0.3)  # Keras 3 calls it with no argument
    with pytest.warns(UserWarning, match="cannot be serialized"):
        assert O.SGD(lambda: 0.3).get_config()["learning_rate"] == pytest.approx(0.3)


def test_exclude_from_weight_decay_by_name():
    opt = O.AdamW(0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    k, b = np.ones(2, np.float32), np.ones(2, np.float32)
    zero = np.zeros(2, np.float32)
    opt.apply([("dense/kernel", k, zero), ("dense/bias", b, zero)])
    np.testing.assert_allclose(k, 1 - 0.5 * 0.1)
    np.testing.assert_allclose(b, 1.0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_round_trip_resumes_exactly(name):
    """get_state after two steps, set_state into a fresh optimizer, two more steps == four steps."""
    ref, ws = CASES[name](), [w.copy() for w in W0]
    for t in range(4):
        ref.apply([(f"w{i}", w, g) for i, (w, g) in enumerate(zip(ws, _grads(t)))])
    first, ws2 = CASES[name](), [w.copy() for w in W0]
    for t in range(2):
        first.apply([(f"w{i}", w, g) for i, (w, g) in enumerate(zip(ws2, _grads(t)))])
    meta, arrays = first.get_state()
    second = CASES[name]()
    second.set_state(meta, [a.copy() for a in arrays])
    for t in range(2, 4):
        second.apply([(f"w{i}", w, g) for i, (w, g) in enumerate(zip(ws2, _grads(t)))])
    assert second.iterations == 4
    for a, b in zip(ws, ws2):
        np.testing.assert_array_equal(a, b)
