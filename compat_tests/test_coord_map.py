"""caffe.coord_map: coordinate maps between net_spec tops, and crop()."""
import json
import os

import numpy as np
import pytest

from caffe.coord_map import (
    PASS_THROUGH_LAYERS,
    AxisMismatchException,
    UndefinedMapException,
    compose,
    conv_params,
    coord_map,
    coord_map_from_to,
    crop,
    crop_params,
    inverse,
)
from caffe.net_spec import NetSpec
from caffe.net_spec import layers as L
from caffe.net_spec import params as P

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden',
                      'net_spec')


def conv_pool_deconv(ks=3, stride=1, pad=0, pool=2, dstride=2, dpad=0):
    """Input -> Convolution -> Pooling -> Deconvolution (kernel = 2 x stride),
    plus a second, smaller input `aux`."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 1, 100, 100]))
    n.aux = L.Input(shape=dict(dim=[2, 1, 20, 20]))
    n.conv = L.Convolution(n.data, num_output=10, kernel_size=ks,
                           stride=stride, pad=pad)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=pool,
                       stride=pool, pad=0)
    if isinstance(dstride, (list, tuple)):
        dks = [2 * s for s in dstride]
    else:
        dks = 2 * dstride
    n.deconv = L.Deconvolution(n.pool, num_output=10, kernel_size=dks,
                               stride=dstride, pad=dpad)
    return n


# -- golden ---------------------------------------------------------------

def test_golden_fcn_offset_and_crop_layer():
    with open(os.path.join(GOLDEN, 'net_spec.json')) as f:
        golden = json.load(f)['coord_map_upscore_to_data']
    n = NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[1, 3, 100, 100]),
                                     dict(dim=[1, 1, 100, 100])], ntop=2)
    n.conv1 = L.Convolution(n.data, num_output=8, kernel_size=3, pad=100)
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, num_output=8, kernel_size=3)
    n.pool2 = L.Pooling(n.conv2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.score = L.Convolution(n.pool2, num_output=4, kernel_size=1)
    n.upscore = L.Deconvolution(n.score, convolution_param=dict(
        num_output=4, kernel_size=8, stride=4, bias_term=False))
    ax, a, b = coord_map_from_to(n.upscore, n.data)
    assert ax == golden['axis']
    assert np.all(a == golden['scale'])
    assert np.all(b == golden['offset'])

    n.crop = crop(n.upscore, n.data)
    layer = n.to_proto().layer[-1]
    assert layer.name == 'crop' and layer.type == 'Crop'
    assert list(layer.bottom) == ['upscore', 'data']
    assert layer.crop_param.axis == golden['axis'] + 1
    assert list(layer.crop_param.offset) == [int(-golden['offset'])]
    with open(os.path.join(GOLDEN, 'fcn_crop_netspec.prototxt')) as f:
        assert str(n.to_proto()) == f.read()


# -- pycaffe's test_coord_map behaviours ---------------------------------------

def test_conv_pool_deconv():
    # 2x pool undone by 2x deconv: identity
    n = conv_pool_deconv()
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    assert (ax, a, b) == (1, 1, 0)
    # 4x pool and 4x deconv: shifted by one
    n = conv_pool_deconv(pool=4, dstride=4)
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    assert (ax, a, b) == (1, 1, -1)


def test_pass_through_and_1x1_conv_are_identity():
    n = conv_pool_deconv()
    expected = coord_map_from_to(n.deconv, n.data)
    n.relu = L.ReLU(n.deconv)
    n.conv1x1 = L.Convolution(n.relu, num_output=10, kernel_size=1,
                              stride=1, pad=0)
    for top in (n.relu, n.conv1x1):
        assert coord_map_from_to(top, n.data) == expected


@pytest.mark.parametrize('pad', [1, 4, 10])
def test_padding(pad):
    n = conv_pool_deconv()
    _, a, b = coord_map_from_to(n.deconv, n.data)
    # conv padding shifts one way ...
    n = conv_pool_deconv(pad=pad)
    _, a_pad, b_pad = coord_map_from_to(n.deconv, n.data)
    assert a_pad == a and b_pad == b - pad
    # ... deconv padding the other
    n = conv_pool_deconv(dpad=pad)
    _, a_pad, b_pad = coord_map_from_to(n.deconv, n.data)
    assert a_pad == a and b_pad == b + pad
    # and equal paddings cancel
    n = conv_pool_deconv(pad=pad, dpad=pad)
    _, a_pad, b_pad = coord_map_from_to(n.deconv, n.data)
    assert a_pad == a and b_pad == b


def test_multi_bottom_multi_top():
    n = conv_pool_deconv()
    n.conv_data, n.conv_aux = L.Convolution(
        n.data, n.aux, ntop=2, num_output=10, kernel_size=5, stride=2, pad=0)
    m1 = coord_map_from_to(n.conv_data, n.data)
    m2 = coord_map_from_to(n.conv_aux, n.aux)
    assert m1 == m2
    # conv maps data x -> x / 2 - 1; from conv back to data: 2 x + 2
    assert m1[0] == 1 and m1[1] == 2 and m1[2] == 2


def test_rect_is_two_isotropic_maps():
    n3 = conv_pool_deconv(ks=3, stride=1, pad=0)
    n5 = conv_pool_deconv(ks=5, stride=2, pad=10)
    n35 = conv_pool_deconv(ks=[3, 5], stride=[1, 2], pad=[0, 10])
    ax3, a3, b3 = coord_map_from_to(n3.deconv, n3.data)
    ax5, a5, b5 = coord_map_from_to(n5.deconv, n5.data)
    ax35, a35, b35 = coord_map_from_to(n35.deconv, n35.data)
    assert ax3 == ax5 == ax35 == 1
    assert len(a35) == len(b35) == 2
    assert a3 == a35[0] and b3 == b35[0]
    assert a5 == a35[1] and b5 == b35[1]


def test_nd_conv():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 100, 100, 100]))
    n.conv = L.Convolution(n.data, num_output=10, kernel_size=[3, 3, 3],
                           stride=[1, 1, 1], pad=[0, 1, 2])
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=2, stride=2,
                       pad=0)
    n.deconv = L.Deconvolution(n.pool, num_output=10, kernel_size=4,
                               stride=2, pad=0)
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    assert ax == 1
    assert len(a) == len(b) == 3
    assert np.all(a == 1)
    assert b[0] - 1 == b[1] and b[1] - 1 == b[2]


@pytest.mark.parametrize('offset', [0, 3, 10])
def test_crop_of_crop(offset):
    n = conv_pool_deconv()
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    n.crop = L.Crop(n.deconv, n.data, axis=2, offset=offset)
    ax_c, a_c, b_c = coord_map_from_to(n.crop, n.data)
    assert ax_c == ax and a_c == a and b_c == b + offset


def test_crop_helper_makes_crop_layer():
    n = conv_pool_deconv(pool=4, dstride=4)
    n.crop = crop(n.deconv, n.data)
    fn = n.crop.fn
    assert fn.type_name == 'Crop'
    assert fn.inputs == (n.deconv, n.data)
    assert fn.params['crop_param'] == dict(axis=2, offset=[1])
    layer = n.to_proto().layer[-1]
    assert layer.crop_param.axis == 2
    assert list(layer.crop_param.offset) == [1]
    assert list(layer.bottom) == ['deconv', 'data']


def test_catch_unconnected():
    n = conv_pool_deconv()
    n.ip = L.InnerProduct(n.deconv, num_output=10)
    with pytest.raises(RuntimeError):
        coord_map_from_to(n.ip, n.data)


def test_catch_scale_mismatch():
    n = conv_pool_deconv(pool=3, dstride=2)
    with pytest.raises(AssertionError):
        crop(n.deconv, n.data)


def test_catch_negative_crop():
    n = conv_pool_deconv(dpad=10)
    with pytest.raises(AssertionError):
        crop(n.deconv, n.data)


def test_catch_noninteger_offset():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 10, 10]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=2)
    with pytest.raises(AssertionError):
        crop(n.conv, n.data)


# -- the map algebra ------------------------------------------------------------

def test_undefined_map():
    top = L.InnerProduct(L.Input(), num_output=2)
    with pytest.raises(UndefinedMapException):
        coord_map(top.fn)


def test_axis_mismatch():
    with pytest.raises(AxisMismatchException):
        compose((1, 1, 0), (2, 1, 0))
    # through a graph: conv on axis 2 after conv on axis 1
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 10, 10]))
    n.c1 = L.Convolution(n.data, num_output=1, kernel_size=3)
    n.c2 = L.Convolution(n.c1, num_output=1, kernel_size=3, axis=2)
    with pytest.raises(AxisMismatchException):
        coord_map_from_to(n.c2, n.data)


def test_compose_and_inverse():
    assert compose((None, 2, 1), (3, 0.5, 4)) == (3, 1.0, 9)
    assert compose((1, 2, 1), (None, 1, 0)) == (1, 2, 1)
    assert compose((1, 2, 1), (1, 3, 2)) == (1, 6, 5)
    assert inverse((1, 2, 3)) == (1, 0.5, -1.5)
    ax, a, b = compose((1, 2, 3), inverse((1, 2, 3)))
    assert (ax, a, b) == (1, 1, 0)


def test_single_layer_maps():
    data = L.Input()
    conv = L.Convolution(data, kernel_size=5, stride=2, pad=1)
    ax, a, b = coord_map(conv.fn)
    assert ax == 1 and a == 0.5 and b == (1 - 2) / 2
    dil = L.Convolution(data, kernel_size=3, dilation=2)
    assert coord_map(dil.fn)[2] == -2          # extent 5
    dec = L.Deconvolution(data, convolution_param=dict(kernel_size=4,
                                                       stride=2, pad=1))
    ax, a, b = coord_map(dec.fn)
    assert ax == 1 and a == 2 and b == 0.5
    pool = L.Pooling(data, kernel_size=3, stride=2)
    assert coord_map(pool.fn)[1:] == (0.5, -0.5)
    for kind in PASS_THROUGH_LAYERS:
        assert coord_map(getattr(L, kind)(data).fn) == (None, 1, 0)
    c = L.Crop(data, data, axis=2, offset=[3, 4])
    ax, a, b = coord_map(c.fn)
    assert ax == 1 and a == 1 and list(b) == [-3, -4]


def test_param_extraction():
    data = L.Input()
    axis, stride, extent, pad = conv_params(
        L.Convolution(data, kernel_size=[3, 5], dilation=[1, 2]).fn)
    assert axis == 1
    assert list(stride) == [1] and list(pad) == [0]
    assert list(extent) == [3, 9]
    axis, offset = crop_params(L.Crop(data, data).fn)
    assert axis == 2 and list(offset) == [0]
    axis, offset = crop_params(
        L.Crop(data, data, crop_param=dict(axis=1, offset=[1, 2, 3])).fn)
    assert axis == 1 and list(offset) == [1, 2, 3]
    with pytest.raises(AssertionError):
        conv_params(L.Convolution(data, kernel_size=3, pad_h=1).fn)


def test_pass_through_list():
    assert PASS_THROUGH_LAYERS == [
        'AbsVal', 'BatchNorm', 'Bias', 'BNLL', 'Dropout', 'Eltwise', 'ELU',
        'Log', 'LRN', 'Exp', 'MVN', 'Power', 'ReLU', 'PReLU', 'Scale',
        'Sigmoid', 'Split', 'TanH', 'Threshold']


def test_branchy_graph_is_fast():
    """Many residual-style joins must not make the walk exponential."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 64, 64]))
    x = n.data
    for _ in range(40):
        y = L.ReLU(x)
        x = L.Eltwise(x, y)
    n.out = L.Deconvolution(x, convolution_param=dict(kernel_size=1))
    assert coord_map_from_to(n.out, n.data) == (1, 1, 0)
