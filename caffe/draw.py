"""Draw a Caffe NetParameter as a graph (pycaffe's ``caffe.draw``).

Layers become boxes (coloured by type; in-place neuron layers green), blobs
become octagons, and edges run bottom -> layer -> top.  The graph is built with
``pydotplus`` when it is installed, else ``pydot``.  Producing images (PNG,
PDF, SVG, ...) runs graphviz's ``dot`` program; ``get_pydot_graph(...)
.to_string()`` and the ``.raw`` extension give the DOT source without it.
"""

from . import atomic
from .protoio import schema

try:
    import pydotplus as pydot
except ImportError:
    from ._extras import require
    pydot = require('pydot', 'caffe.draw (building net graphs; rendering images also '
                    'needs graphviz\'s "dot" program, e.g. apt-get install graphviz)',
                    alternatives=('pydotplus',))

__all__ = ['LAYER_STYLE_DEFAULT', 'NEURON_LAYER_STYLE', 'BLOB_STYLE',
           'get_pooling_types_dict', 'get_edge_label', 'get_layer_lr_mult',
           'get_layer_label', 'choose_color_by_layertype', 'get_pydot_graph',
           'draw_net', 'draw_net_to_file']

# Node styles.  As in pycaffe, get_pydot_graph overwrites
# LAYER_STYLE_DEFAULT['fillcolor'] with the colour of each layer it draws.
LAYER_STYLE_DEFAULT = {'shape': 'record',
                       'fillcolor': '#6495ED',
                       'style': 'filled'}
NEURON_LAYER_STYLE = {'shape': 'record',
                      'fillcolor': '#90EE90',
                      'style': 'filled'}
BLOB_STYLE = {'shape': 'octagon',
              'fillcolor': '#E0E0E0',
              'style': 'filled'}

_LEARNING_TYPES = ('Convolution', 'Deconvolution', 'InnerProduct')


def get_pooling_types_dict():
    """``{number: name}`` of PoolingParameter.PoolMethod, e.g. ``{0: 'MAX',
    1: 'AVE', 2: 'STOCHASTIC'}``."""
    enum = schema().PoolingParameter.PoolMethod.DESCRIPTOR
    return {value.number: name for name, value in enum.values_by_name.items()}


def get_edge_label(layer):
    """Label of the edges from a layer to its tops: ``'Batch N'`` for Data,
    ``num_output`` for (De)Convolution and InnerProduct, else ``'""'``."""
    if layer.type == 'Data':
        return 'Batch ' + str(layer.data_param.batch_size)
    if layer.type in ('Convolution', 'Deconvolution'):
        return str(layer.convolution_param.num_output)
    if layer.type == 'InnerProduct':
        return str(layer.inner_product_param.num_output)
    return '""'


def get_layer_lr_mult(layer):
    """``(weight lr_mult, bias lr_mult)`` of a Convolution, Deconvolution or
    InnerProduct layer; an absent ``param`` entry counts as 1.0.

    Raises ValueError for other layer types and for more than two ``param``
    entries.
    """
    if layer.type not in _LEARNING_TYPES:
        raise ValueError('%s layers do not have a learning rate multiplier'
                         % layer.type)
    specs = list(getattr(layer, 'param', []))
    if len(specs) > 2:
        raise ValueError('Could not parse the learning rate multiplier')
    mults = [getattr(spec, 'lr_mult', 1.0) for spec in specs]
    mults += [1.0] * (2 - len(mults))
    return tuple(mults)


def get_layer_label(layer, rankdir, display_lrm=False):
    """The (double-quoted) text of a layer's node: its name, ``(Type)`` or
    ``(Pooling MAX)``, kernel/stride/pad for Convolution, Deconvolution and
    Pooling, and with ``display_lrm`` the lr multipliers of learning layers
    (unless both are zero).  Parts are separated by a space for vertical
    layouts (``rankdir`` TB or BT) and by a DOT line break otherwise.
    """
    separator = ' ' if rankdir in ('TB', 'BT') else r'\n'

    parts = [layer.name]
    if layer.type == 'Pooling':
        pool_names = get_pooling_types_dict()
        parts.append('(%s %s)' % (layer.type,
                                  pool_names[layer.pooling_param.pool]))
    else:
        parts.append('(%s)' % layer.type)

    if layer.type in ('Convolution', 'Deconvolution', 'Pooling'):
        if layer.type == 'Pooling':
            pooling = layer.pooling_param
            kernel, stride, pad = (pooling.kernel_size, pooling.stride,
                                   pooling.pad)
        else:
            conv = layer.convolution_param
            kernel = conv.kernel_size[0] if len(conv.kernel_size) else 1
            stride = conv.stride[0] if len(conv.stride) else 1
            pad = conv.pad[0] if len(conv.pad) else 0
        parts.append(separator.join(['kernel size: %d' % kernel,
                                     'stride: %d' % stride,
                                     'pad: %d' % pad]))

    if display_lrm and layer.type in _LEARNING_TYPES:
        weight_mult, bias_mult = get_layer_lr_mult(layer)
        if weight_mult or bias_mult:
            parts.append('lr mult: %.1f, %.1f' % (weight_mult, bias_mult))

    # quoted, so that the colons are not read as DOT port separators
    return '"%s"' % separator.join(parts)


def choose_color_by_layertype(layertype):
    """Fill colour of a layer node."""
    if layertype in ('Convolution', 'Deconvolution'):
        return '#FF5050'
    if layertype == 'Pooling':
        return '#FF9900'
    if layertype == 'InnerProduct':
        return '#CC33FF'
    return '#6495ED'


def _in_phase(layer, phase):
    """pycaffe's phase filter: only the ``phase`` of include/exclude rules
    counts (stages and levels are ignored)."""
    if len(layer.include) and len(layer.exclude):
        raise ValueError('layer ' + layer.name + ' has both include '
                         'and exclude specified.')
    keep = len(layer.include) == 0
    for rule in layer.include:
        keep = keep or rule.phase == phase
    for rule in layer.exclude:
        keep = keep and rule.phase != phase
    return keep


def get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None,
                    display_lrm=False):
    """A pydot ``Dot`` graph of a NetParameter.

    Parameters
    ----------
    caffe_net : caffe_pb2.NetParameter
    rankdir : {'LR', 'TB', 'BT', 'RL'}
        graphviz layout direction.
    label_edges : bool
        label layer -> top edges (see :func:`get_edge_label`).
    phase : caffe_pb2.TRAIN, caffe_pb2.TEST or None
        draw only the layers of this phase (None: all layers).
    display_lrm : bool
        show the lr multipliers of learning layers.
    """
    graph = pydot.Dot(caffe_net.name if caffe_net.name else 'Net',
                      graph_type='digraph', rankdir=rankdir)
    nodes = {}
    edges = []
    for layer in caffe_net.layer:
        if phase is not None and not _in_phase(layer, phase):
            continue
        label = get_layer_label(layer, rankdir, display_lrm=display_lrm)
        layer_key = '%s_%s' % (layer.name, layer.type)
        in_place = (len(layer.bottom) == 1 and len(layer.top) == 1 and
                    layer.bottom[0] == layer.top[0])
        if in_place:
            nodes[layer_key] = pydot.Node(label, **NEURON_LAYER_STYLE)
        else:
            LAYER_STYLE_DEFAULT['fillcolor'] = \
                choose_color_by_layertype(layer.type)
            nodes[layer_key] = pydot.Node(label, **LAYER_STYLE_DEFAULT)
        for blob in layer.bottom:
            nodes[blob + '_blob'] = pydot.Node('%s' % blob, **BLOB_STYLE)
            edges.append((blob + '_blob', layer_key, '""'))
        for blob in layer.top:
            # pycaffe draws a top without the blob style; a later bottom
            # use of the same blob restyles it
            nodes[blob + '_blob'] = pydot.Node('%s' % blob)
            edge_label = get_edge_label(layer) if label_edges else '""'
            edges.append((layer_key, blob + '_blob', edge_label))

    for node in nodes.values():
        graph.add_node(node)
    for src, dst, edge_label in edges:
        graph.add_edge(pydot.Edge(nodes[src], nodes[dst], label=edge_label))
    return graph


def draw_net(caffe_net, rankdir, ext='png', phase=None, display_lrm=False):
    """Render a NetParameter; returns the image as bytes in format ``ext``
    (any graphviz output format; runs ``dot``).  ``ext='raw'`` returns the
    DOT source instead and needs no graphviz."""
    graph = get_pydot_graph(caffe_net, rankdir, phase=phase,
                            display_lrm=display_lrm)
    if ext == 'raw':
        return graph.to_string().encode('utf-8')
    return graph.create(format=ext)


def draw_net_to_file(caffe_net, filename, rankdir='LR', phase=None,
                     display_lrm=False):
    """Render a NetParameter into ``filename``; the format is the file's
    extension (``net.png``, ``net.svg``, ``net.pdf``; ``net.raw`` writes the
    DOT source)."""
    ext = filename[filename.rfind('.') + 1:]
    image = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    atomic.write_bytes(filename, image)
