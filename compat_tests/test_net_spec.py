"""caffe.net_spec: NetSpec / layers / params against BVLC pycaffe's behaviour.

Golden text in golden/net_spec/ was written by real pycaffe (str(to_proto())).
"""
import os
import tempfile

import pytest
from google.protobuf import text_format

from caffe import net_spec
from caffe.net_spec import Function, NetSpec, Top, assign_proto, to_proto
from caffe.net_spec import layers as L
from caffe.net_spec import params as P
from caffe.proto import caffe_pb2

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden',
                      'net_spec')


def _golden_text(name):
    with open(os.path.join(GOLDEN, name)) as f:
        return f.read()


def _parse(text):
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    return net


# -- the nets ---------------------------------------------------------------

def learning_lenet(lmdb, batch_size):
    """The LeNet of BVLC's 01-learning-lenet notebook, as used for the
    golden file (with lr multipliers, an in-place ReLU, a TEST-only accuracy
    and a top-less Silence)."""
    n = NetSpec()
    n.data, n.label = L.Data(batch_size=batch_size, backend=P.Data.LMDB,
                             source=lmdb, ntop=2,
                             transform_param=dict(scale=1. / 255))
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2,
                        pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50,
                            weight_filler=dict(type='xavier'),
                            param=[dict(lr_mult=1), dict(lr_mult=2)])
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2,
                        pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500,
                           weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10,
                             weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    n.acc = L.Accuracy(n.score, n.label,
                       include=dict(phase=caffe_pb2.TEST))
    n.silence = L.Silence(n.acc, ntop=0)
    return n.to_proto()


def fcn_crop_net():
    from caffe.coord_map import crop
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
    n.crop = crop(n.upscore, n.data)
    return n


def dummy_lenet(batch_size):
    """pycaffe test-suite LeNet on DummyData, named through a NetSpec."""
    n = NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[batch_size, 1, 28, 28]),
                                         dict(dim=[batch_size, 1, 1, 1])],
                                  transform_param=dict(scale=1. / 255),
                                  ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50,
                            weight_filler=dict(type='xavier'))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.ip1 = L.InnerProduct(n.pool2, num_output=500,
                           weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10,
                           weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    return n.to_proto()


def anonymous_lenet(batch_size):
    """The same LeNet with no names at all: Top.to_proto() names it."""
    data, label = L.DummyData(shape=[dict(dim=[batch_size, 1, 28, 28]),
                                     dict(dim=[batch_size, 1, 1, 1])],
                              transform_param=dict(scale=1. / 255), ntop=2)
    conv1 = L.Convolution(data, kernel_size=5, num_output=20,
                          weight_filler=dict(type='xavier'))
    pool1 = L.Pooling(conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    conv2 = L.Convolution(pool1, kernel_size=5, num_output=50,
                          weight_filler=dict(type='xavier'))
    pool2 = L.Pooling(conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    ip1 = L.InnerProduct(pool2, num_output=500,
                         weight_filler=dict(type='xavier'))
    relu1 = L.ReLU(ip1, in_place=True)
    ip2 = L.InnerProduct(relu1, num_output=10,
                         weight_filler=dict(type='xavier'))
    loss = L.SoftmaxWithLoss(ip2, label)
    return loss.to_proto()


def silent_net():
    n = NetSpec()
    n.data, n.data2 = L.DummyData(shape=dict(dim=3), ntop=2)
    n.silence_data = L.Silence(n.data, ntop=0)
    n.silence_data2 = L.Silence(n.data2, ntop=0)
    return n.to_proto()


# -- golden text ------------------------------------------------------------

def test_golden_lenet_text():
    ours = str(learning_lenet('mnist_train_lmdb', 64))
    golden = _golden_text('lenet_netspec.prototxt')
    # same message, field for field
    assert _parse(golden) == learning_lenet('mnist_train_lmdb', 64)
    # and exactly pycaffe's text (floats as '1.0', '0.003921568859368563')
    assert ours == golden


def test_golden_fcn_crop_text_exact():
    ours = str(fcn_crop_net().to_proto())
    assert ours == _golden_text('fcn_crop_netspec.prototxt')


def test_output_reparses():
    proto = learning_lenet('x', 2)
    assert _parse(str(proto)) == proto


# -- pycaffe's test_net_spec behaviours --------------------------------------

def test_lenet_named():
    proto = dummy_lenet(50)
    assert len(proto.layer) == 9
    relu = proto.layer[6]
    assert relu.type == 'ReLU'
    assert list(relu.bottom) == list(relu.top) == ['ip1']
    assert relu.name == 'relu1'
    assert [l.name for l in proto.layer] == [
        'data', 'conv1', 'pool1', 'conv2', 'pool2', 'ip1', 'relu1', 'ip2',
        'loss']
    assert list(proto.layer[0].top) == ['data', 'label']
    assert list(proto.layer[8].bottom) == ['ip2', 'label']
    # everything after the in-place ReLU reads the ReLU's (shared) blob
    assert list(proto.layer[7].bottom) == ['ip1']
    dummy = proto.layer[0]
    assert [list(s.dim) for s in dummy.dummy_data_param.shape] == [
        [50, 1, 28, 28], [50, 1, 1, 1]]
    assert dummy.transform_param.scale == pytest.approx(1. / 255)


def test_lenet_anonymous_autonames():
    proto = anonymous_lenet(50)
    assert len(proto.layer) == 9
    assert list(proto.layer[6].bottom) == list(proto.layer[6].top)
    names = [l.name for l in proto.layer]
    assert names == ['DummyData1', 'Convolution1', 'Pooling1',
                     'Convolution2', 'Pooling2', 'InnerProduct1',
                     'ReLU1', 'InnerProduct2', 'SoftmaxWithLoss1']
    assert list(proto.layer[0].top) == ['DummyData1', 'DummyData2']
    # the in-place ReLU gets its own auto name but writes its bottom's blob
    assert proto.layer[6].type == 'ReLU'
    assert list(proto.layer[6].top) == ['InnerProduct1']
    assert list(proto.layer[7].bottom) == ['InnerProduct1']
    assert list(proto.layer[8].bottom) == ['InnerProduct2', 'DummyData2']


def test_anonymous_matches_named_structure():
    named, anon = dummy_lenet(7), anonymous_lenet(7)
    for a, b in zip(named.layer, anon.layer):
        assert a.type == b.type
        assert a.convolution_param == b.convolution_param
        assert a.inner_product_param == b.inner_product_param


def test_zero_tops():
    proto = silent_net()
    assert [l.name for l in proto.layer] == ['data', 'silence_data',
                                             'silence_data2']
    assert list(proto.layer[0].top) == ['data', 'data2']
    for layer, blob in zip(proto.layer[1:], ['data', 'data2']):
        assert layer.type == 'Silence'
        assert list(layer.bottom) == [blob]
        assert len(layer.top) == 0
    assert list(proto.layer[0].dummy_data_param.shape[0].dim) == [3]


def test_zero_tops_autonamed():
    data = L.DummyData(shape=dict(dim=[2]))
    silence = L.Silence(data, ntop=0)
    assert isinstance(silence, Function)
    proto = to_proto(silence)
    assert [l.name for l in proto.layer] == ['DummyData1', 'Silence1']
    assert len(proto.layer[1].top) == 0


def test_type_error_for_non_top_input():
    data = L.DummyData(ntop=2)
    assert isinstance(data, tuple) and len(data) == 2
    pattern = r"^Silence input 0 is not a Top \(type is <class 'tuple'>\)$"
    with pytest.raises(TypeError, match=pattern):
        L.Silence(data, ntop=0)
    L.Silence(*data, ntop=0)
    with pytest.raises(TypeError, match=r'^Eltwise input 1 is not a Top'):
        L.Eltwise(data[0], 3)


def test_layers_return_types():
    top = L.Input(shape=dict(dim=[1]))
    assert isinstance(top, Top) and top.n == 0
    assert top.fn.type_name == 'Input' and top.fn.ntop == 1
    a, b, c = L.Slice(top, ntop=3)
    assert (a.n, b.n, c.n) == (0, 1, 2) and a.fn is b.fn is c.fn
    # ntop / in_place are consumed, not written to the prototxt
    assert 'ntop' not in a.fn.params
    relu = L.ReLU(top, in_place=True)
    assert relu.fn.in_place and 'in_place' not in relu.fn.params


def test_load_into_net():
    """Like pycaffe's test: the generated text builds a Net (when the
    runtime is there)."""
    import caffe
    if not hasattr(caffe, 'Net'):
        pytest.skip('caffe.Net runtime not importable in this checkout')
    if 'DummyData' not in caffe.layer_type_list():
        pytest.skip('DummyData layer not registered in this checkout')
    for proto, n_layers in ((dummy_lenet(5), 9), (anonymous_lenet(5), 9)):
        with tempfile.NamedTemporaryFile('w', suffix='.prototxt',
                                         delete=False) as f:
            f.write(str(proto))
        try:
            net = caffe.Net(f.name, caffe.TEST)
            assert len(net.layers) == n_layers
        finally:
            os.unlink(f.name)
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt',
                                     delete=False) as f:
        f.write(str(silent_net()))
    try:
        net = caffe.Net(f.name, caffe.TEST)
        assert len(net.forward()) == 0
    finally:
        os.unlink(f.name)



def test_input_net_loads_into_net():
    """A NetSpec built only from runtime-core layers (Input, Convolution,
    in-place ReLU, Pooling, top-less Silence) builds and runs as a Net."""
    import caffe
    if not hasattr(caffe, 'Net'):
        pytest.skip('caffe.Net runtime not importable in this checkout')
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 1, 12, 12]))
    n.conv = L.Convolution(n.data, num_output=3, kernel_size=3,
                           weight_filler=dict(type='xavier'))
    n.relu = L.ReLU(n.conv, in_place=True)
    n.pool = L.Pooling(n.relu, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.silence = L.Silence(n.pool, ntop=0)
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt',
                                     delete=False) as f:
        f.write(str(n.to_proto()))
    try:
        net = caffe.Net(f.name, caffe.TEST)
    finally:
        os.unlink(f.name)
    assert list(net.blobs) == ['data', 'conv', 'pool']
    assert len(net.layers) == 5
    assert net.blobs['pool'].data.shape == (2, 3, 5, 5)
    assert len(net.forward()) == 0

# -- parameter routing -------------------------------------------------------

def test_params_constants():
    assert P.Pooling.MAX == caffe_pb2.PoolingParameter.MAX == 0
    assert P.Pooling.AVE == 1
    assert P.Pooling.STOCHASTIC == 2
    assert P.Eltwise.SUM == 1 and P.Eltwise.PROD == 0
    assert P.Data.LMDB == 1 and P.Data.LEVELDB == 0
    with pytest.raises(AttributeError):
        P.Pooling.NOT_A_METHOD  # noqa: B018 (the look-up must raise)


def test_param_name_dict():
    names = net_spec.param_name_dict()
    assert names['Convolution'] == 'convolution'
    assert names['InnerProduct'] == 'inner_product'
    assert names['Python'] == 'python'
    assert names['Transformation'] == 'transform'
    assert names['Loss'] == 'loss'
    assert names['DummyData'] == 'dummy_data'
    assert names['ReLU'] == 'relu'
    assert names['Pooling'] == 'pooling'
    for no_message in ('Deconvolution', 'SoftmaxWithLoss', 'Split'):
        assert no_message not in names
    assert net_spec._param_names() == names


def test_kwargs_routing():
    data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n = NetSpec()
    n.data = data
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, stride=2,
                           pad=[1, 0], bias_term=False,
                           param=[dict(lr_mult=1, decay_mult=1),
                                  dict(lr_mult=2, decay_mult=0)],
                           weight_filler=dict(type='gaussian', std=0.01),
                           propagate_down=False, name='my_conv')
    n.loss = L.EuclideanLoss(n.conv, n.conv, loss_weight=0.5,
                             include=[dict(phase=caffe_pb2.TRAIN),
                                      dict(stage='s')],
                             exclude=dict(not_stage='x'))
    n.py = L.Python(n.conv, module='m', layer='Cls', param_str='{"a": 1}')
    n.ip = L.InnerProduct(n.conv, num_output=3, axis=2)
    proto = n.to_proto()
    conv, loss, py, ip = proto.layer[1:]
    cp = conv.convolution_param
    assert cp.num_output == 4 and not cp.bias_term
    assert list(cp.kernel_size) == [3]      # scalar into repeated field
    assert list(cp.stride) == [2]
    assert list(cp.pad) == [1, 0]
    assert cp.weight_filler.type == 'gaussian'
    assert cp.weight_filler.std == pytest.approx(0.01)
    assert [p.lr_mult for p in conv.param] == [1, 2]
    assert [p.decay_mult for p in conv.param] == [1, 0]
    assert list(conv.propagate_down) == [False]
    # a `name` kwarg overrides the layer name taken from the NetSpec
    assert conv.name == 'my_conv'
    assert list(conv.top) == ['conv']
    assert list(loss.loss_weight) == [0.5]
    assert loss.include[0].phase == caffe_pb2.TRAIN
    assert list(loss.include[1].stage) == ['s']
    assert list(loss.exclude[0].not_stage) == ['x']
    assert py.python_param.module == 'm'
    assert py.python_param.layer == 'Cls'
    assert py.python_param.param_str == '{"a": 1}'
    assert ip.inner_product_param.axis == 2
    # a type without its own *_param keeps explicit *_param kwargs
    dec = L.Deconvolution(n.conv, convolution_param=dict(
        num_output=2, kernel_size=4, stride=2)).to_proto().layer[-1]
    assert dec.convolution_param.num_output == 2
    assert list(dec.convolution_param.stride) == [2]
    assert not dec.HasField('pooling_param')


def test_unknown_kwarg_raises():
    with pytest.raises(AttributeError):
        L.ReLU(L.Input(), no_such_field=1).to_proto()


def test_assign_proto_rules():
    layer = caffe_pb2.LayerParameter()
    assign_proto(layer, 'bottom', 'x')
    assign_proto(layer, 'bottom', ['y', 'z'])
    assert list(layer.bottom) == ['x', 'y', 'z']
    assign_proto(layer, 'param', dict(lr_mult=3))
    assign_proto(layer, 'param', [dict(name='w'), dict(name='b')])
    assert [p.name for p in layer.param] == ['', 'w', 'b']
    assert layer.param[0].lr_mult == 3
    assign_proto(layer, 'convolution_param',
                 dict(kernel_size=[3, 5], weight_filler=dict(type='xavier')))
    assert list(layer.convolution_param.kernel_size) == [3, 5]
    assert layer.convolution_param.weight_filler.type == 'xavier'
    assign_proto(layer, 'name', 'n')
    assert layer.name == 'n'
    assign_proto(layer, 'dummy_data_param',
                 dict(shape=[dict(dim=[1, 2]), dict(dim=[3])]))
    assert [list(s.dim) for s in layer.dummy_data_param.shape] == [[1, 2],
                                                                   [3]]


def test_assign_proto_numpy_values():
    np = pytest.importorskip('numpy')
    layer = caffe_pb2.LayerParameter()
    assign_proto(layer, 'crop_param',
                 dict(axis=np.int64(2), offset=list(np.array([4, 5]))))
    assert layer.crop_param.axis == 2
    assert list(layer.crop_param.offset) == [4, 5]


# -- NetSpec ------------------------------------------------------------------

def test_netspec_item_and_attribute_access():
    n = NetSpec()
    n['data'] = L.Input(shape=dict(dim=[1]))
    n.relu = L.ReLU(n['data'])
    assert n.data is n['data']
    assert n['relu'] is n.relu
    assert list(n.tops) == ['data', 'relu']
    assert 'relu' in n
    with pytest.raises(KeyError):
        n['missing']
    with pytest.raises(KeyError):
        n.missing  # noqa: B018 (the look-up must raise)
    assert not hasattr(n, 'missing')


def test_netspec_layer_order_is_dependency_order():
    n = NetSpec()
    a = L.Input(shape=dict(dim=[1]))
    b = L.ReLU(a)
    n.b = b            # assigned first, depends on a
    n.a = a
    proto = n.to_proto()
    assert [l.name for l in proto.layer] == ['a', 'b']
    assert list(proto.layer[1].bottom) == ['a']


def test_unassigned_intermediates_get_autonames():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    hidden = L.Convolution(n.data, num_output=1, kernel_size=1)
    n.out = L.ReLU(hidden)
    proto = n.to_proto()
    assert [l.name for l in proto.layer] == ['data', 'Convolution1', 'out']
    assert list(proto.layer[2].bottom) == ['Convolution1']


def test_shared_top_emitted_once():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1]))
    n.x = L.ReLU(n.data)
    n.y = L.Sigmoid(n.data)
    n.sum = L.Eltwise(n.x, n.y, operation=P.Eltwise.SUM)
    proto = n.to_proto()
    assert [l.name for l in proto.layer] == ['data', 'x', 'y', 'sum']
    assert proto.layer[3].eltwise_param.operation == P.Eltwise.SUM


def test_to_proto_several_tops():
    a = L.Input(shape=dict(dim=[1]))
    b = L.ReLU(a)
    c = L.Sigmoid(a)
    proto = to_proto(b, c)
    assert [l.type for l in proto.layer] == ['Input', 'ReLU', 'Sigmoid']
    assert [l.name for l in proto.layer] == ['Input1', 'ReLU1', 'Sigmoid1']


def test_deconvolution_flat_kwargs():
    """pycaffe has no Deconvolution entry in its param-name table, so flat
    kwargs failed there; here they reach convolution_param (the message the
    layer reads), and explicit convolution_param gives the same layer."""
    data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    flat = L.Deconvolution(data, num_output=2, kernel_size=4, stride=2,
                           bias_term=False, loss_weight=0)
    nested = L.Deconvolution(data, convolution_param=dict(
        num_output=2, kernel_size=4, stride=2, bias_term=False),
        loss_weight=0)
    a, b = flat.to_proto().layer[-1], nested.to_proto().layer[-1]
    assert a.convolution_param == b.convolution_param
    assert list(a.loss_weight) == list(b.loss_weight) == [0]
    assert list(a.convolution_param.kernel_size) == [4]


def test_top_level_names_are_net_spec_objects():
    """`from caffe import layers as L` must give net_spec's Layers, not the
    caffe/layers/ runtime package that shares the name."""
    import caffe
    from caffe import layers as top_layers
    from caffe import params as top_params
    assert top_layers is net_spec.layers
    assert top_params is net_spec.params
    assert caffe.NetSpec is NetSpec and caffe.to_proto is to_proto
