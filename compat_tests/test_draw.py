"""caffe.draw and ``python -m caffe.draw_net``.

Tests of the DOT source run everywhere (pydot only); tests that render images
need graphviz's ``dot`` and skip without it.
"""
import os
import shutil
import subprocess
import sys

import pytest
from google.protobuf import text_format

pytest.importorskip('pydot')

import caffe.draw as draw  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, 'compat_tests', 'golden', 'net_spec')
LENET = os.path.join(GOLDEN, 'lenet_netspec.prototxt')
FCN = os.path.join(GOLDEN, 'fcn_crop_netspec.prototxt')

needs_dot = pytest.mark.skipif(shutil.which('dot') is None,
                               reason="graphviz's 'dot' program is not "
                                      "installed; rendering images needs it")


def load(path):
    net = caffe_pb2.NetParameter()
    with open(path) as f:
        text_format.Merge(f.read(), net)
    return net


def layer(text):
    msg = caffe_pb2.LayerParameter()
    text_format.Merge(text, msg)
    return msg


def node_names(graph):
    return [n.get_name() for n in graph.get_nodes()]


def edge_triples(graph):
    return [(e.get_source(), e.get_destination(), e.get('label'))
            for e in graph.get_edges()]


# -- helpers -----------------------------------------------------------------

def test_styles():
    assert draw.NEURON_LAYER_STYLE == {'shape': 'record',
                                       'fillcolor': '#90EE90',
                                       'style': 'filled'}
    assert draw.BLOB_STYLE == {'shape': 'octagon', 'fillcolor': '#E0E0E0',
                               'style': 'filled'}
    assert draw.LAYER_STYLE_DEFAULT['shape'] == 'record'
    assert draw.LAYER_STYLE_DEFAULT['style'] == 'filled'


def test_pooling_types_dict():
    assert draw.get_pooling_types_dict() == {0: 'MAX', 1: 'AVE',
                                             2: 'STOCHASTIC'}


def test_edge_labels():
    assert draw.get_edge_label(layer(
        'type: "Data" data_param { batch_size: 64 }')) == 'Batch 64'
    assert draw.get_edge_label(layer(
        'type: "Convolution" convolution_param { num_output: 20 }')) == '20'
    assert draw.get_edge_label(layer(
        'type: "Deconvolution" convolution_param { num_output: 3 }')) == '3'
    assert draw.get_edge_label(layer(
        'type: "InnerProduct" inner_product_param { num_output: 7 }')) == '7'
    assert draw.get_edge_label(layer('type: "ReLU"')) == '""'


def test_lr_mult():
    assert draw.get_layer_lr_mult(layer('type: "Convolution"')) == (1.0, 1.0)
    assert draw.get_layer_lr_mult(layer(
        'type: "InnerProduct" param { lr_mult: 0 }')) == (0.0, 1.0)
    assert draw.get_layer_lr_mult(layer(
        'type: "Deconvolution" param { lr_mult: 3 } param { lr_mult: 4 }')
    ) == (3.0, 4.0)
    with pytest.raises(ValueError, match='ReLU layers do not have'):
        draw.get_layer_lr_mult(layer('type: "ReLU"'))
    with pytest.raises(ValueError):
        draw.get_layer_lr_mult(layer(
            'type: "Convolution" param {} param {} param {}'))


def test_layer_labels():
    conv = layer('name: "conv1" type: "Convolution" param { lr_mult: 1 } '
                 'param { lr_mult: 2 } convolution_param { num_output: 20 '
                 'kernel_size: 5 stride: 2 pad: 1 }')
    assert draw.get_layer_label(conv, 'LR') == \
        r'"conv1\n(Convolution)\nkernel size: 5\nstride: 2\npad: 1"'
    assert draw.get_layer_label(conv, 'TB') == \
        '"conv1 (Convolution) kernel size: 5 stride: 2 pad: 1"'
    assert draw.get_layer_label(conv, 'BT', display_lrm=True) == \
        ('"conv1 (Convolution) kernel size: 5 stride: 2 pad: 1 '
         'lr mult: 1.0, 2.0"')
    # defaults when the repeated conv fields are empty
    bare = layer('name: "d" type: "Deconvolution"')
    assert draw.get_layer_label(bare, 'TB') == \
        '"d (Deconvolution) kernel size: 1 stride: 1 pad: 0"'
    pool = layer('name: "p" type: "Pooling" pooling_param { pool: AVE '
                 'kernel_size: 3 stride: 2 }')
    assert draw.get_layer_label(pool, 'RL') == \
        r'"p\n(Pooling AVE)\nkernel size: 3\nstride: 2\npad: 0"'
    relu = layer('name: "r" type: "ReLU"')
    assert draw.get_layer_label(relu, 'LR', display_lrm=True) == \
        r'"r\n(ReLU)"'
    frozen = layer('name: "f" type: "InnerProduct" param { lr_mult: 0 } '
                   'param { lr_mult: 0 }')
    assert draw.get_layer_label(frozen, 'TB', display_lrm=True) == \
        '"f (InnerProduct)"'


def test_colors():
    assert draw.choose_color_by_layertype('Convolution') == '#FF5050'
    assert draw.choose_color_by_layertype('Deconvolution') == '#FF5050'
    assert draw.choose_color_by_layertype('Pooling') == '#FF9900'
    assert draw.choose_color_by_layertype('InnerProduct') == '#CC33FF'
    assert draw.choose_color_by_layertype('Softmax') == '#6495ED'


# -- the graph -------------------------------------------------------------------

def test_graph_nodes_and_edges():
    net = load(LENET)
    graph = draw.get_pydot_graph(net, 'LR')
    assert graph.get_name() == 'Net'
    assert graph.get_rankdir() == 'LR'
    names = node_names(graph)
    assert r'"conv1\n(Convolution)\nkernel size: 5\nstride: 1\npad: 0"' \
        in names
    assert '"relu1\\n(ReLU)"' in names
    for blob in ('data', 'label', 'conv1', 'fc1', 'score', 'loss', 'acc'):
        assert blob in names
    assert len(names) == len(set(names))
    edges = edge_triples(graph)
    conv1 = r'"conv1\n(Convolution)\nkernel size: 5\nstride: 1\npad: 0"'
    assert ('data', conv1, '""') in edges
    assert (conv1, 'conv1', '20') in edges
    assert ('"data\\n(Data)"', 'data', 'Batch 64') in edges
    assert ('"data\\n(Data)"', 'label', 'Batch 64') in edges
    # in-place ReLU: blob -> layer -> same blob
    assert ('fc1', '"relu1\\n(ReLU)"', '""') in edges
    assert ('"relu1\\n(ReLU)"', 'fc1', '""') in edges
    # the top-less Silence only has an incoming edge
    assert [e for e in edges if e[0] == '"silence\\n(Silence)"'] == []
    # 2 per one-in/one-out layer (8 of them), Data 2, loss/acc 3, silence 1
    assert len(edges) == 23

    unlabeled = draw.get_pydot_graph(net, 'LR', label_edges=False)
    assert all(label == '""' for _, _, label in edge_triples(unlabeled))


def test_graph_styles():
    graph = draw.get_pydot_graph(load(LENET), 'TB')
    nodes = {n.get_name(): n for n in graph.get_nodes()}
    relu = nodes['"relu1 (ReLU)"']
    assert relu.get('fillcolor').strip('"') == '#90EE90'
    pool = nodes['"pool1 (Pooling MAX) kernel size: 2 stride: 2 pad: 0"']
    assert pool.get('fillcolor').strip('"') == '#FF9900'
    assert pool.get('shape') == 'record'
    # blobs used as bottoms get the blob style
    assert nodes['conv1'].get('shape') == 'octagon'


def test_graph_name_from_net():
    net = load(FCN)
    net.name = 'FCNmini'
    assert draw.get_pydot_graph(net, 'LR').get_name() == 'FCNmini'


def test_phase_filter():
    net = load(LENET)    # `acc` is include { phase: TEST }
    acc = '"acc\\n(Accuracy)"'
    assert acc in node_names(draw.get_pydot_graph(net, 'LR'))
    assert acc in node_names(draw.get_pydot_graph(net, 'LR',
                                                  phase=caffe_pb2.TEST))
    assert acc not in node_names(draw.get_pydot_graph(net, 'LR',
                                                      phase=caffe_pb2.TRAIN))
    net.layer[1].exclude.add().phase = caffe_pb2.TRAIN   # conv1
    train = node_names(draw.get_pydot_graph(net, 'TB',
                                            phase=caffe_pb2.TRAIN))
    test = node_names(draw.get_pydot_graph(net, 'TB', phase=caffe_pb2.TEST))
    conv1 = '"conv1 (Convolution) kernel size: 5 stride: 1 pad: 0"'
    assert conv1 not in train and conv1 in test
    net.layer[1].include.add().phase = caffe_pb2.TEST
    with pytest.raises(ValueError, match='both include and exclude'):
        draw.get_pydot_graph(net, 'TB', phase=caffe_pb2.TEST)
    # no filter: no complaint
    draw.get_pydot_graph(net, 'TB')


def test_display_lrm():
    net = load(LENET)
    plain = draw.get_pydot_graph(net, 'LR').to_string()
    lrm = draw.get_pydot_graph(net, 'LR', display_lrm=True).to_string()
    assert 'lr mult' not in plain
    assert r'\nlr mult: 1.0, 2.0"' in lrm      # conv2
    assert lrm.count('lr mult: 1.0, 1.0') > 0  # conv1, fc1, score


def test_dot_source():
    src = draw.get_pydot_graph(load(FCN), 'BT').to_string()
    assert src.startswith('digraph Net {')
    assert 'rankdir=BT' in src
    assert ('"upscore (Deconvolution) kernel size: 8 stride: 4 pad: 0"'
            in src)
    assert '-> upscore [label=4]' in src
    # raw output is the DOT source, without graphviz
    raw = draw.draw_net(load(FCN), 'BT', ext='raw')
    assert raw.decode('utf-8') == src


def test_draw_net_to_file_raw(tmp_path):
    out = tmp_path / 'net.raw'
    draw.draw_net_to_file(load(LENET), str(out), 'TB')
    assert out.read_text().startswith('digraph Net {')


@needs_dot
def test_draw_png(tmp_path):
    png = draw.draw_net(load(LENET), 'LR')
    assert png[:8] == b'\x89PNG\r\n\x1a\n'
    out = tmp_path / 'lenet.png'
    draw.draw_net_to_file(load(LENET), str(out), phase=caffe_pb2.TEST,
                          display_lrm=True)
    assert out.read_bytes()[:4] == b'\x89PNG'
    svg = tmp_path / 'lenet.svg'
    draw.draw_net_to_file(load(LENET), str(svg))
    assert 'relu1' in svg.read_text()


# -- python -m caffe.draw_net --------------------------------------------------------

def _run_cli(*args):
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    return subprocess.run([sys.executable, '-m', 'caffe.draw_net'] +
                          list(args), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_raw(tmp_path):
    out = tmp_path / 'lenet.raw'
    res = _run_cli(LENET, str(out), '--rankdir', 'TB', '--phase', 'TRAIN',
                   '--display_lrm')
    assert res.returncode == 0, res.stderr
    assert 'Drawing net to %s' % out in res.stdout
    src = out.read_text()
    assert 'rankdir=TB' in src
    assert 'Accuracy' not in src              # TEST-only layer dropped
    assert 'lr mult: 1.0, 2.0' in src


def test_cli_main_in_process(tmp_path, capsys):
    from caffe import draw_net
    out = tmp_path / 'fcn.raw'
    draw_net.main([FCN, str(out)])
    assert 'rankdir=LR' in out.read_text()
    assert 'Drawing net to' in capsys.readouterr().out
    with pytest.raises(ValueError, match='Unknown phase: VAL'):
        draw_net.main([FCN, str(out), '--phase', 'VAL'])
    args = draw_net.parse_args([FCN, 'x.png'])
    assert (args.rankdir, args.phase, args.display_lrm) == ('LR', 'ALL',
                                                            False)


@needs_dot
def test_cli_png(tmp_path):
    out = tmp_path / 'lenet.png'
    res = _run_cli(LENET, str(out), '--phase', 'TEST')
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:4] == b'\x89PNG'


def test_import_error_without_pydot():
    """With neither pydotplus nor pydot importable, importing caffe.draw
    fails with an ImportError that says what to install."""
    code = ('import sys\n'
            'sys.modules["pydot"] = None\n'
            'sys.modules["pydotplus"] = None\n'
            'try:\n'
            '    import caffe.draw\n'
            'except ImportError as e:\n'
            '    print("IMPORTERROR:", e)\n')
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    res = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert 'IMPORTERROR:' in res.stdout, res.stderr
    assert 'pip install "torchcaffe[draw]"' in res.stdout
    assert 'pydot' in res.stdout and 'Traceback' not in res.stderr
