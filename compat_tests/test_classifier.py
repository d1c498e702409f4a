"""caffe.Classifier / caffe.Detector and the classify/detect scripts, checked
against the pipeline they are documented to run (resize, crops, Transformer,
forward) on the golden CIFAR-10 quick net."""
import os

import numpy as np
import pytest
from golden_cases import GOLDEN

import caffe
import caffe.imagenet
from caffe import classify, detect

NETS = os.path.join(GOLDEN, "nets")
MODEL = os.path.join(NETS, "cifar10_quick.prototxt")
WEIGHTS = os.path.join(NETS, "cifar10_quick.caffemodel")
CAT = os.path.join(GOLDEN, "io", "cat.jpg")
RGB = os.path.join(GOLDEN, "io", "rgb.png")
MEAN = np.array([104.0, 117.0, 123.0])


def _reference_net_and_transformer():
    net = caffe.Net(MODEL, caffe.TEST, weights=WEIGHTS)
    t = caffe.io.Transformer({"data": (1, 3, 32, 32)})
    t.set_transpose("data", (2, 0, 1))
    t.set_mean("data", MEAN)
    t.set_raw_scale("data", 255.0)
    t.set_channel_swap("data", (2, 1, 0))
    return net, t


def _forward_each(net, t, crops):
    out = []
    for crop in crops:
        net.blobs["data"].data[...] = t.preprocess("data", crop)
        out.append(net.forward()["prob"][0].copy())
    return np.array(out)


@pytest.fixture(scope="module")
def images():
    return [caffe.io.load_image(CAT), caffe.io.load_image(RGB)]


def test_classifier_is_a_net_with_transformer():
    c = caffe.Classifier(MODEL, WEIGHTS, image_dims=(40, 40), mean=MEAN, raw_scale=255.0,
                         channel_swap=(2, 1, 0))
    assert isinstance(c, caffe.Net)
    assert list(c.crop_dims) == [32, 32]
    assert tuple(c.image_dims) == (40, 40)
    assert c.transformer.transpose["data"] == (2, 0, 1)
    d = caffe.Classifier(MODEL, WEIGHTS)
    assert list(d.image_dims) == [32, 32]


def test_predict_oversample_and_center(images):
    c = caffe.Classifier(MODEL, WEIGHTS, image_dims=(40, 40), mean=MEAN, raw_scale=255.0,
                         channel_swap=(2, 1, 0))
    net, t = _reference_net_and_transformer()
    resized = np.array([caffe.io.resize_image(im, (40, 40)) for im in images])
    # oversample: 10 crops per image, averaged
    pred = c.predict(images)
    assert pred.shape == (2, 10)
    crops = caffe.io.oversample(resized, (32, 32))
    ref = _forward_each(net, t, crops).reshape(2, 10, -1).mean(1)
    np.testing.assert_allclose(pred, ref, rtol=1e-4, atol=1e-6)
    # center only: the 32x32 crop at offset 4
    pred_c = c.predict(images, oversample=False)
    ref_c = _forward_each(net, t, resized[:, 4:36, 4:36, :])
    np.testing.assert_allclose(pred_c, ref_c, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pred_c.sum(1), 1.0, rtol=1e-5)


def test_detector_windows_without_context(images):
    d = caffe.Detector(MODEL, WEIGHTS, mean=MEAN, raw_scale=255.0, channel_swap=(2, 1, 0))
    assert list(d.crop_dims) == [32, 32, 3]
    windows = [np.array([0, 0, 100, 120]), np.array([50, 60, 300, 400])]
    dets = d.detect_windows([(CAT, windows), (RGB, [np.array([0, 0, 4, 4])])])
    assert [x["filename"] for x in dets] == [CAT, CAT, RGB]
    assert all(x["prediction"].shape == (10,) for x in dets)
    net, t = _reference_net_and_transformer()
    crop = images[0][50:300, 60:400]
    ref = _forward_each(net, t, [crop])[0]
    np.testing.assert_allclose(dets[1]["prediction"], ref, rtol=1e-4, atol=1e-6)


def test_detector_context_pad_crop(images):
    d = caffe.Detector(MODEL, WEIGHTS, mean=MEAN, raw_scale=255.0, channel_swap=(2, 1, 0),
                       context_pad=4)
    # context mean in raw RGB [0, 1] space
    np.testing.assert_allclose(d.crop_mean[0, 0], MEAN[::-1] / 255.0)
    # a window in the middle: no mean padding needed
    crop = d.crop(images[0], np.array([100, 100, 199, 199]))
    assert crop.shape == (32, 32, 3)
    # a window at the corner: context runs off the image and is mean-filled
    crop = d.crop(images[0], np.array([0, 0, 49, 49]))
    assert crop.shape == (32, 32, 3)
    np.testing.assert_allclose(crop[0, 0], MEAN[::-1] / 255.0, rtol=1e-6)
    assert not np.allclose(crop[20, 20], MEAN[::-1] / 255.0)
    dets = d.detect_windows([(CAT, [np.array([0, 0, 49, 49]), np.array([10, 20, 200, 300])])])
    assert len(dets) == 2 and np.isfinite(dets[0]["prediction"]).all()


def test_detector_selective_search_missing_package():
    d = caffe.Detector(MODEL, WEIGHTS)
    with pytest.raises(ImportError, match="selective_search"):
        d.detect_selective_search([CAT])


def test_imagenet_mean_stand_in():
    mean = np.load(caffe.imagenet.mean_file())
    assert mean.shape == (3, 256, 256)
    np.testing.assert_allclose(mean.mean(1).mean(1), caffe.imagenet.BGR_MEAN)
    np.testing.assert_array_equal(mean, caffe.imagenet.ilsvrc_2012_mean())
    assert os.path.abspath(classify.DEFAULT_MEAN) == os.path.abspath(caffe.imagenet.mean_file())


def test_classify_script(tmp_path, images, capsys):
    inputs = str(tmp_path / "in.npy")
    np.save(inputs, np.array([caffe.io.resize_image(im, (48, 48)) for im in images]))
    out = str(tmp_path / "pred.npy")
    rc = classify.main([inputs, out, "--model_def", MODEL, "--pretrained_model", WEIGHTS,
                        "--images_dim", "40,40", "--center_only"])
    assert rc == 0
    assert "Classifying 2 inputs." in capsys.readouterr().out
    pred = np.load(out)
    assert pred.shape == (2, 10)
    # default mean file: the (3,256,256) stand-in resized by set_mean
    c = caffe.Classifier(MODEL, WEIGHTS, image_dims=(40, 40),
                         mean=np.load(caffe.imagenet.mean_file()), raw_scale=255.0,
                         channel_swap=(2, 1, 0))
    np.testing.assert_allclose(pred, c.predict(list(np.load(inputs)), oversample=False),
                               rtol=1e-5)
    # a directory of images, no mean
    folder = tmp_path / "imgs"
    folder.mkdir()
    import shutil
    shutil.copy(CAT, str(folder / "a.jpg"))
    rc = classify.main([str(folder), out, "--model_def", MODEL, "--pretrained_model", WEIGHTS,
                        "--mean_file", ""])
    assert rc == 0 and np.load(out).shape == (1, 10)


def test_detect_script(tmp_path):
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit, match="pandas"):
            detect.main([str(tmp_path / "x.csv"), str(tmp_path / "o.csv"),
                         "--model_def", MODEL, "--pretrained_model", WEIGHTS])
        return
    csv = tmp_path / "windows.csv"
    csv.write_text("filename,ymin,xmin,ymax,xmax\n%s,0,0,100,120\n%s,50,60,300,400\n"
                   % (CAT, CAT))
    out = str(tmp_path / "det.csv")
    rc = detect.main([str(csv), out, "--crop_mode", "list", "--model_def", MODEL,
                      "--pretrained_model", WEIGHTS])
    assert rc == 0
    import pandas as pd
    df = pd.read_csv(out)
    assert len(df) == 2 and "class9" in df.columns


def test_classify_without_model_is_a_usage_error(tmp_path, capsys):
    """No model files (the CaffeNet defaults are not shipped): argparse's usage and
    one message, exit status 2, no traceback."""
    with pytest.raises(SystemExit) as ei:
        classify.main([str(tmp_path / "in.npy"), str(tmp_path / "out.npy")])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m caffe.classify")
    assert "--model_def" in err and "file not found" in err and "not shipped" in err
    with pytest.raises(SystemExit):
        classify.main([str(tmp_path / "missing.jpg"), str(tmp_path / "o.npy"),
                       "--model_def", MODEL, "--pretrained_model", WEIGHTS])
    assert "no such file or folder" in capsys.readouterr().err
