"""Issue 31, item 1: Keras 2 layers holding activation *objects* import; unknown classes are named.

``Conv2D(8, 3, activation=LeakyReLU(0.1))`` (also PReLU, ELU, ReLU with arguments,
ThresholdedReLU, ``Activation(LeakyReLU())``) is saved by Keras 2.10 with the object's bare class
name; the importer rebuilds each object as a standard layer after the layer that held it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from zoo_support import as_keras_2_10, randomize, rename_class

from cxr_viewer.core.errors import BundleError

pytest.importorskip("tf_keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = 32


def _activation_objects_model(k):
    inp = k.Input((SIZE, SIZE, 1), name="image")
    x = k.layers.Conv2D(8, 3, activation=k.layers.LeakyReLU(0.1), name="conv2d_234")(inp)
    x = k.layers.Conv2D(8, 3, activation=k.layers.PReLU(), name="c_prelu")(x)
    x = k.layers.Conv2D(8, 3, activation=k.layers.ELU(alpha=0.5), name="c_elu")(x)
    x = k.layers.Conv2D(8, 3, activation=k.layers.ReLU(max_value=0.8), name="c_relu6")(x)
    x = k.layers.Conv2D(8, 3, activation=k.layers.ThresholdedReLU(0.05), name="c_thr")(x)
    x = k.layers.Activation(k.layers.LeakyReLU(0.2), name="act_obj")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    x = k.layers.Dense(4, activation=k.layers.ELU(), name="fc")(x)
    return k.Model(inp, k.layers.Dense(2, activation="softmax", name="head")(x))


@pytest.fixture(scope="module")
def k2():
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    return tf_keras


@pytest.fixture(scope="module")
def leaky_h5(k2, tmp_path_factory):
    model = _activation_objects_model(k2)
    randomize(model, 4)
    path = tmp_path_factory.mktemp("act") / "leaky.h5"
    model.save(path, save_format="h5")
    x = np.random.default_rng(0).uniform(0, 1, (4, SIZE, SIZE, 1)).astype(np.float32)
    return as_keras_2_10(path), x, model.predict(x, verbose=0)


def _import(path, out, **kw):
    from cxr_viewer.core.importer import import_model

    kw.setdefault("n_background", 4)
    return import_model(path, ["normal", "lesion"], out_dir=out, preprocessing="unit", **kw)


def test_activation_objects_are_rebuilt_as_layers_with_identical_outputs(leaky_h5, tmp_path):
    path, x, expected = leaky_h5
    bundle = _import(path, tmp_path / "b")
    model = bundle.load_model()
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5)
    layers = {layer.name: type(layer).__name__ for layer in model.layers}

    def named(prefix: str) -> str:
        # tf_keras numbers an activation object's own name ("leaky_re_lu_3") after the objects
        # made before it in this process, so the rebuilt layer is found by its prefix
        (name,) = [n for n in layers if n == prefix or n.startswith(prefix + "_")]
        return name

    assert layers["conv2d_234"] == "Conv2D"
    assert layers[named("conv2d_234_leaky_re_lu")] == "LeakyReLU"
    assert layers[named("c_prelu_p_re_lu")] == "PReLU"
    assert layers[named("c_thr_thresholded_re_lu")] == "ReLU"
    assert layers["act_obj"] == "LeakyReLU"  # the Activation layer is its object
    prelu = model.get_layer(named("c_prelu_p_re_lu")).get_weights()[0]
    assert np.abs(prelu).max() > 0  # the slopes stored under c_prelu were loaded
    notes = " ".join(bundle.metadata["import_notes"])
    assert "conv2d_234 (Conv2D with activation=LeakyReLU(...))" in notes
    assert bundle.metadata["verification"]["max_abs_diff"] <= 1e-5


def test_gradcam_reaches_the_rebuilt_activation(leaky_h5, tmp_path):
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.model.inference import Classifier

    path, x, _ = leaky_h5
    bundle = _import(path, tmp_path / "b")
    assert bundle.gradcam_layer == "act_obj"
    heat = create_explainer("gradcam", Classifier(bundle)).explain(x[0], 1)
    assert heat.values.shape == (SIZE, SIZE) and np.all(np.isfinite(heat.values))


def test_unknown_activation_class_is_named_with_where_it_is(leaky_h5, tmp_path):
    path = tmp_path / "mish.h5"
    path.write_bytes(leaky_h5[0].read_bytes())
    rename_class(path, "ELU", "Mish")
    with pytest.raises(BundleError) as err:
        _import(path, tmp_path / "b")
    msg = str(err.value)
    assert "layer 'c_elu' uses a custom class 'Mish'" in msg
    assert "['config']['activation']" in msg
    assert "Conv2D" not in err.value.what  # the standard class is not blamed
    assert not (tmp_path / "b").exists()


def test_unknown_layer_class_is_named(leaky_h5, tmp_path):
    path = tmp_path / "block.h5"
    path.write_bytes(leaky_h5[0].read_bytes())
    rename_class(path, "GlobalAveragePooling2D", "MyPooling")
    with pytest.raises(BundleError) as err:
        _import(path, tmp_path / "b")
    assert "layer 'gap' is of a custom class 'MyPooling'" in str(err.value)
    assert "register_keras_serializable" in err.value.hint
