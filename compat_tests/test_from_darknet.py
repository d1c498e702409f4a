"""Darknet -> Caffe (caffe.from_darknet): tiny YOLO v2/v3/v4 layer lists with random
weights in Darknet's format, verified layer by layer against OpenCV's Darknet reader."""
import numpy as np
import pytest

import caffe
from caffe.export import ExportError, darknet_cfg

# Darknet's published tiny-YOLO layer lists with the widths divided by 8, 64x64 inputs and
# 2 classes, so the tests run in seconds; the structure (pools, routes, groups, upsample,
# shortcut-free heads) is unchanged.
NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"


def conv(filters, size=3, stride=1, bn=1, act="leaky"):
    return ("[convolutional]\n%sfilters=%d\nsize=%d\nstride=%d\npad=1\nactivation=%s\n" % (
        "batch_normalize=1\n" if bn else "", filters, size, stride, act))


def pool(size=2, stride=2):
    return "[maxpool]\nsize=%d\nstride=%d\n" % (size, stride)


def yolo(mask):
    return ("[yolo]\nmask=%s\nanchors=10,14, 23,27, 37,58, 81,82, 135,169, 344,319\nclasses=2\n"
            "num=6\n" % mask)


YOLOV2_TINY = NET + "".join(
    [conv(2), pool(), conv(4), pool(), conv(8), pool(), conv(16), pool(), conv(32), pool(),
     conv(64), pool(2, 1), conv(128), conv(64), conv(5 * 7, 1, bn=0, act="linear"),
     "[region]\nanchors=0.57,0.67, 1.87,2.06, 3.33,5.47, 7.88,3.52, 9.77,9.16\nclasses=2\n"
     "coords=4\nnum=5\nsoftmax=1\n"])

YOLOV3_TINY = NET + "".join(
    [conv(2), pool(), conv(4), pool(), conv(8), pool(), conv(16), pool(), conv(32), pool(),
     conv(64), pool(2, 1), conv(128), conv(32, 1), conv(64), conv(21, 1, bn=0, act="linear"),
     yolo("3,4,5"), "[route]\nlayers=-4\n", conv(16, 1), "[upsample]\nstride=2\n",
     "[route]\nlayers=-1, 8\n", conv(32), conv(21, 1, bn=0, act="linear"), yolo("0,1,2")])


def _csp(f):
    return [conv(f), "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n", conv(f // 2), conv(f // 2),
            "[route]\nlayers=-1,-2\n", conv(f, 1), "[route]\nlayers=-6,-1\n", pool()]


YOLOV4_TINY = NET + "".join(
    [conv(4, 3, 2), conv(8, 3, 2)] + _csp(8) + _csp(16) + _csp(32) +
    [conv(64), conv(32, 1), conv(64), conv(21, 1, bn=0, act="linear"), yolo("3,4,5"),
     "[route]\nlayers=-4\n", conv(16, 1), "[upsample]\nstride=2\n", "[route]\nlayers=-1, 23\n",
     conv(32), conv(21, 1, bn=0, act="linear"), yolo("1,2,3")])

# YOLOv2 (yolov2-voc.cfg's 32 layers, widths / 16): the passthrough route through
# [reorg] joins the 4x4 map of layer 16 to the 2x2 head.
YOLOV2 = NET + "".join(
    [conv(2), pool(), conv(4), pool(), conv(8), conv(4, 1), conv(8), pool(), conv(16),
     conv(8, 1), conv(16), pool(), conv(32), conv(16, 1), conv(32), conv(16, 1), conv(32), pool(),
     conv(64), conv(32, 1), conv(64), conv(32, 1), conv(64), conv(64), conv(64),
     "[route]\nlayers=-9\n", conv(8, 1), "[reorg]\nstride=2\n", "[route]\nlayers=-1,-4\n",
     conv(64), conv(5 * 7, 1, bn=0, act="linear"),
     "[region]\nanchors=1.3221,1.73145, 3.19275,4.00944, 5.05587,8.09892, 9.47112,4.84053, "
     "11.2364,10.0071\nclasses=2\ncoords=4\nnum=5\nsoftmax=1\n"])

CFGS = {"yolov2-tiny": YOLOV2_TINY, "yolov3-tiny": YOLOV3_TINY, "yolov4-tiny": YOLOV4_TINY,
        "yolov2": YOLOV2}


def random_weights(cfg_path, weights_path, tmp_path, header=(0, 2, 0, 32013312), seed=0):
    """Darknet weights of the right sizes (taken from a cfg-only conversion), random values,
    positive variances."""
    report = caffe.from_darknet(cfg_path, None, str(tmp_path / "sizes.prototxt"), verify=False)
    rng = np.random.RandomState(seed)
    arrays = []
    for index in sorted(report.layer_weights):
        parts = report.layer_weights[index]
        for k, a in enumerate(parts):
            is_var = len(parts) == 5 and k == 3
            arrays.append((rng.rand(a.size) + 0.5) if is_var else rng.randn(a.size) * 0.3)
    darknet_cfg.write_weights(weights_path, header, arrays)
    return arrays


@pytest.mark.parametrize("name", sorted(CFGS))
def test_tiny_yolo_matches_opencv_darknet_reader(name, tmp_path):
    cfg = tmp_path / (name + ".cfg")
    cfg.write_text(CFGS[name])
    weights = str(tmp_path / (name + ".weights"))
    random_weights(str(cfg), weights, tmp_path)
    report = caffe.from_darknet(str(cfg), weights, str(tmp_path / "m.prototxt"),
                                str(tmp_path / "m.caffemodel"))
    assert report.verified and report.ok, report.table
    assert len(report.outputs) == (1 if "v2" in name else 2)
    assert all(r.max_rel <= 1e-4 for r in report.rows), report.table
    assert report.header == (0, 2, 0, 32013312)


def test_weights_header_with_32_bit_seen(tmp_path):
    cfg = tmp_path / "t.cfg"
    cfg.write_text(NET + conv(4) + pool())
    weights = str(tmp_path / "t.weights")
    random_weights(str(cfg), weights, tmp_path, header=(0, 1, 0, 1234))
    header, floats = darknet_cfg.read_weights(weights)
    assert header == (0, 1, 0, 1234) and floats.size == 4 * 4 + 4 * 3 * 9
    report = caffe.from_darknet(str(cfg), weights, str(tmp_path / "m.prototxt"),
                                str(tmp_path / "m.caffemodel"))
    assert report.ok


def test_errors_name_section_key_and_line(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(NET + conv(4) + conv(4, act="selu"))
    with pytest.raises(ExportError, match=r"bad.cfg:12 \[convolutional\] \(layer 1\) key "
                                          r"'activation'.*'selu'"):
        caffe.from_darknet(str(cfg), None, str(tmp_path / "m.prototxt"), verify=False)
    cfg.write_text(NET + conv(6) + "[reorg]\nstride=2\n")
    with pytest.raises(ExportError, match=r"\[reorg\] \(layer 1\) key 'stride'.*divisible"):
        caffe.from_darknet(str(cfg), None, str(tmp_path / "m.prototxt"), verify=False)
    cfg.write_text(NET + conv(4) + "[reorg]\nstride=2\nreverse=1\n")
    with pytest.raises(ExportError, match=r"\[reorg\] \(layer 1\) key 'reverse'"):
        caffe.from_darknet(str(cfg), None, str(tmp_path / "m.prototxt"), verify=False)
    cfg.write_text(NET + conv(4))
    weights = tmp_path / "short.weights"
    darknet_cfg.write_weights(str(weights), (0, 2, 0, 0), [np.zeros(10)])
    with pytest.raises(ExportError, match=r"ends early.*layer 0, cfg line 5.*rolling_mean"):
        caffe.from_darknet(str(cfg), str(weights), str(tmp_path / "m.prototxt"),
                           str(tmp_path / "m.caffemodel"), verify=False)


@pytest.mark.parametrize("name", sorted(CFGS))
def test_round_trip_darknet_caffe_darknet_weights_byte_for_byte(name, tmp_path):
    cfg = tmp_path / (name + ".cfg")
    cfg.write_text(CFGS[name])
    weights = str(tmp_path / (name + ".weights"))
    random_weights(str(cfg), weights, tmp_path, header=(0, 2, 5, 123456789))
    report = caffe.from_darknet(str(cfg), weights, str(tmp_path / "m.prototxt"),
                                str(tmp_path / "m.caffemodel"), verify=False)
    caffe.to_darknet(str(tmp_path / "m.prototxt"), str(tmp_path / "m.caffemodel"),
                     str(tmp_path / "back.cfg"), str(tmp_path / "back.weights"),
                     header=report.header)
    assert open(str(tmp_path / "back.weights"), "rb").read() == open(weights, "rb").read()
    back = (tmp_path / "back.cfg").read_text()
    assert back.count("[reorg]") == CFGS[name].count("[reorg]")
    # the written cfg reads back into the same Caffe net (no [yolo] sections: no weights)
    again = caffe.from_darknet(str(tmp_path / "back.cfg"), str(tmp_path / "back.weights"),
                               str(tmp_path / "again.prototxt"),
                               str(tmp_path / "again.caffemodel"))
    assert again.ok


def test_to_darknet_refuses_what_darknet_lacks(tmp_path):
    from caffe import net_spec as ns
    n = ns.NetSpec()
    n.data = ns.layers.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.conv = ns.layers.Convolution(n.data, num_output=2, kernel_size=3,
                                   weight_filler=dict(type="xavier"))
    n.lrn = ns.layers.LRN(n.conv)
    (tmp_path / "n.prototxt").write_text(str(n.to_proto()))
    with pytest.raises(ExportError, match="layer 'lrn' \\(type LRN\\): has no Darknet section"):
        caffe.to_darknet(str(tmp_path / "n.prototxt"), None, str(tmp_path / "n.cfg"))


@pytest.mark.parametrize("name", sorted(CFGS))
def test_yolo_region_layers_decode_boxes_like_opencv(name, tmp_path):
    cfg = tmp_path / (name + ".cfg")
    cfg.write_text(CFGS[name].replace("classes=2\n", "classes=2\nthresh=0.2\n"))
    weights = str(tmp_path / (name + ".weights"))
    random_weights(str(cfg), weights, tmp_path)
    report = caffe.from_darknet(str(cfg), weights, str(tmp_path / "m.prototxt"),
                                str(tmp_path / "m.caffemodel"), target="any")
    decoded = [r for r in report.rows if r.name.split(":")[1].startswith(("yolo", "region"))]
    assert len(decoded) == (1 if "v2" in name else 2), report.table
    assert all(r.max_rel <= 1e-4 for r in decoded), report.table
    net = caffe.Net(str(tmp_path / "m.prototxt"), str(tmp_path / "m.caffemodel"), caffe.TEST)
    kinds = [lp.type for lp in net.layers]
    assert ("Region" if "v2" in name else "Yolo") in kinds


def test_yolo_layer_checks_its_parameters(tmp_path):
    proto = tmp_path / "y.prototxt"
    proto.write_text('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 '
                     'dim: 14 dim: 2 dim: 2 } } }\n'
                     'layer { name: "yolo" type: "Yolo" bottom: "x" top: "boxes" yolo_param { '
                     'anchors: [10, 14, 23, 27] mask: [0, 1] classes: 3 net_width: 32 '
                     'net_height: 32 } }\n')
    with pytest.raises(Exception, match="bottom must be N x 16 x H x W"):
        caffe.Net(str(proto), caffe.TEST)


def test_clis_both_ways(tmp_path, capsys):
    from caffe import from_darknet as fd
    from caffe import to_darknet as td
    cfg = tmp_path / "v3.cfg"
    cfg.write_text(YOLOV3_TINY)
    weights = str(tmp_path / "v3.weights")
    random_weights(str(cfg), weights, tmp_path)
    assert fd.main([str(cfg), weights, "-o", str(tmp_path / "out" / "v3")]) == 0
    out = capsys.readouterr().out
    assert "max rel" in out and "PASSED" in out
    assert fd.main([str(cfg), "-o", str(tmp_path / "cfgonly")]) == 0      # prototxt only
    assert (tmp_path / "cfgonly.prototxt").exists()
    assert not (tmp_path / "cfgonly.caffemodel").exists()
    assert td.main([str(tmp_path / "out" / "v3.prototxt"), str(tmp_path / "out" / "v3.caffemodel"),
                    "-o", str(tmp_path / "back")]) == 0
    assert open(str(tmp_path / "back.weights"), "rb").read()[20:] == \
        open(weights, "rb").read()[20:]
    (tmp_path / "bad.cfg").write_text(NET + conv(4, act="selu"))
    assert fd.main([str(tmp_path / "bad.cfg"), "-o", str(tmp_path / "bad")]) == 1
    assert "key 'activation'" in capsys.readouterr().err


def _darknet_reorg(x, stride):
    """Darknet's reorg_cpu(..., forward=0) for one image, written from its index formulas."""
    c, h, w = x.shape
    inner = c // (stride * stride)
    flat, out = x.ravel(), np.empty(x.size, x.dtype)
    for k in range(c):
        for j in range(h):
            for i in range(w):
                c2, offset = k % inner, k // inner
                w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                out[i + w * (j + h * k)] = flat[w2 + w * stride * (h2 + h * stride * c2)]
    return out.reshape(c * stride * stride, h // stride, w // stride)


@pytest.mark.parametrize("channels, size, stride", [(8, 4, 2), (18, 6, 3), (4, 2, 2)])
def test_reorg_is_darknets_permutation_exactly(tmp_path, channels, size, stride):
    cfg = tmp_path / "r.cfg"
    cfg.write_text("[net]\nwidth=%d\nheight=%d\nchannels=%d\n[reorg]\nstride=%d\n"
                   % (size, size, channels, stride))
    weights = str(tmp_path / "r.weights")
    darknet_cfg.write_weights(weights, (0, 2, 0, 0), [])       # [reorg] holds no weights
    caffe.from_darknet(str(cfg), weights, str(tmp_path / "r.prototxt"),
                       str(tmp_path / "r.caffemodel"), verify=False)
    net = caffe.Net(str(tmp_path / "r.prototxt"), str(tmp_path / "r.caffemodel"), caffe.TEST)
    net.blobs["data"].reshape(2, channels, size, size)     # the batch passes through
    net.reshape()
    x = np.random.RandomState(1).randn(2, channels, size, size).astype(np.float32)
    got = net.forward(data=x)["reorg_0"]
    for b in range(2):
        assert np.array_equal(got[b], _darknet_reorg(x[b], stride))
