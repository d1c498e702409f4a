"""Writes the deploy prototxts next to this file (VGG-16, ResNet-50 with
BatchNorm+Scale, GoogLeNet, a MobileNet-v1-style net) in the layouts of the
published Caffe models.  Run once; the outputs are committed.

    python compat_tests/models/make_models.py
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))


class _Writer:
    def __init__(self, name, shape):
        self.lines = ['name: "%s"' % name,
                      'layer { name: "data" type: "Input" top: "data" input_param { shape { %s } } }'
                      % " ".join("dim: %d" % d for d in shape)]

    def add(self, text):
        self.lines.append(text)

    def conv(self, name, bottom, top, n, k, s=1, p=0, group=1, bias=True):
        extra = "" if bias else " bias_term: false"
        g = " group: %d" % group if group != 1 else ""
        self.add('layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s" '
                 'convolution_param { num_output: %d kernel_size: %d stride: %d pad: %d%s%s } }'
                 % (name, bottom, top, n, k, s, p, g, extra))

    def relu(self, name, blob):
        self.add('layer { name: "%s" type: "ReLU" bottom: "%s" top: "%s" }' % (name, blob, blob))

    def bn_scale(self, bn, scale, blob):
        self.add('layer { name: "%s" type: "BatchNorm" bottom: "%s" top: "%s" '
                 'batch_norm_param { use_global_stats: true } }' % (bn, blob, blob))
        self.add('layer { name: "%s" type: "Scale" bottom: "%s" top: "%s" '
                 'scale_param { bias_term: true } }' % (scale, blob, blob))

    def pool(self, name, bottom, top, kind, k, s, p=0):
        self.add('layer { name: "%s" type: "Pooling" bottom: "%s" top: "%s" '
                 'pooling_param { pool: %s kernel_size: %d stride: %d pad: %d } }'
                 % (name, bottom, top, kind, k, s, p))

    def gpool(self, name, bottom, top):
        self.add('layer { name: "%s" type: "Pooling" bottom: "%s" top: "%s" '
                 'pooling_param { pool: AVE global_pooling: true } }' % (name, bottom, top))

    def fc(self, name, bottom, top, n):
        self.add('layer { name: "%s" type: "InnerProduct" bottom: "%s" top: "%s" '
                 'inner_product_param { num_output: %d } }' % (name, bottom, top, n))

    def softmax(self, bottom):
        self.add('layer { name: "prob" type: "Softmax" bottom: "%s" top: "prob" }' % bottom)

    def write(self, filename):
        with open(os.path.join(HERE, filename), "w") as f:
            f.write("\n".join(self.lines) + "\n")


def vgg16():
    w = _Writer("VGG_ILSVRC_16_layers", (10, 3, 224, 224))
    bottom = "data"
    for stage, (n, reps) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for r in range(1, reps + 1):
            name = "conv%d_%d" % (stage, r)
            w.conv(name, bottom, name, n, 3, 1, 1)
            w.relu("relu%d_%d" % (stage, r), name)
            bottom = name
        w.pool("pool%d" % stage, bottom, "pool%d" % stage, "MAX", 2, 2)
        bottom = "pool%d" % stage
    for i, n in ((6, 4096), (7, 4096)):
        w.fc("fc%d" % i, bottom, "fc%d" % i, n)
        w.relu("relu%d" % i, "fc%d" % i)
        w.add('layer { name: "drop%d" type: "Dropout" bottom: "fc%d" top: "fc%d" '
              'dropout_param { dropout_ratio: 0.5 } }' % (i, i, i))
        bottom = "fc%d" % i
    w.fc("fc8", bottom, "fc8", 1000)
    w.softmax("fc8")
    w.write("vgg16_deploy.prototxt")


def resnet50():
    """He et al.'s ResNet-50 deploy layout (stride on the first 1x1 of a stage)."""
    w = _Writer("ResNet-50", (1, 3, 224, 224))
    w.conv("conv1", "data", "conv1", 64, 7, 2, 3, bias=False)
    w.bn_scale("bn_conv1", "scale_conv1", "conv1")
    w.relu("conv1_relu", "conv1")
    w.pool("pool1", "conv1", "pool1", "MAX", 3, 2)
    bottom = "pool1"
    for stage, (n, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], 2):
        for b in range(blocks):
            tag = "%d%s" % (stage, "abcdef"[b])
            stride = 2 if (b == 0 and stage > 2) else 1
            if b == 0:
                w.conv("res%s_branch1" % tag, bottom, "res%s_branch1" % tag, 4 * n, 1, stride,
                       bias=False)
                w.bn_scale("bn%s_branch1" % tag, "scale%s_branch1" % tag, "res%s_branch1" % tag)
                short = "res%s_branch1" % tag
            else:
                short = bottom
            x = bottom
            for part, (k, m, s, p) in zip("abc", [(1, n, stride, 0), (3, n, 1, 1),
                                                  (1, 4 * n, 1, 0)]):
                name = "res%s_branch2%s" % (tag, part)
                w.conv(name, x, name, m, k, s, p, bias=False)
                w.bn_scale("bn%s_branch2%s" % (tag, part), "scale%s_branch2%s" % (tag, part), name)
                if part != "c":
                    w.relu(name + "_relu", name)
                x = name
            w.add('layer { name: "res%s" type: "Eltwise" bottom: "%s" bottom: "%s" top: "res%s" }'
                  % (tag, short, x, tag))
            w.relu("res%s_relu" % tag, "res" + tag)
            bottom = "res" + tag
    w.add('layer { name: "pool5" type: "Pooling" bottom: "%s" top: "pool5" '
          'pooling_param { pool: AVE kernel_size: 7 stride: 1 } }' % bottom)
    w.fc("fc1000", "pool5", "fc1000", 1000)
    w.softmax("fc1000")
    w.write("resnet50_deploy.prototxt")


def googlenet():
    """BVLC GoogLeNet's deploy layout (LRN, inception modules, Concat)."""
    w = _Writer("GoogleNet", (10, 3, 224, 224))
    lrn = 'lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }'
    w.conv("conv1/7x7_s2", "data", "conv1/7x7_s2", 64, 7, 2, 3)
    w.relu("conv1/relu_7x7", "conv1/7x7_s2")
    w.pool("pool1/3x3_s2", "conv1/7x7_s2", "pool1/3x3_s2", "MAX", 3, 2)
    w.add('layer { name: "pool1/norm1" type: "LRN" bottom: "pool1/3x3_s2" top: "pool1/norm1" %s }'
          % lrn)
    w.conv("conv2/3x3_reduce", "pool1/norm1", "conv2/3x3_reduce", 64, 1)
    w.relu("conv2/relu_3x3_reduce", "conv2/3x3_reduce")
    w.conv("conv2/3x3", "conv2/3x3_reduce", "conv2/3x3", 192, 3, 1, 1)
    w.relu("conv2/relu_3x3", "conv2/3x3")
    w.add('layer { name: "conv2/norm2" type: "LRN" bottom: "conv2/3x3" top: "conv2/norm2" %s }'
          % lrn)
    w.pool("pool2/3x3_s2", "conv2/norm2", "pool2/3x3_s2", "MAX", 3, 2)
    bottom = "pool2/3x3_s2"
    spec = [("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64), None,
            ("4a", 192, 96, 208, 16, 48, 64), ("4b", 160, 112, 224, 24, 64, 64),
            ("4c", 128, 128, 256, 24, 64, 64), ("4d", 112, 144, 288, 32, 64, 64),
            ("4e", 256, 160, 320, 32, 128, 128), None,
            ("5a", 256, 160, 320, 32, 128, 128), ("5b", 384, 192, 384, 48, 128, 128)]
    pools = iter(["pool3/3x3_s2", "pool4/3x3_s2"])
    for s in spec:
        if s is None:
            name = next(pools)
            w.pool(name, bottom, name, "MAX", 3, 2)
            bottom = name
            continue
        tag, c1, r3, c3, r5, c5, pp = s
        p = "inception_%s/" % tag
        outs = []
        for _branch, layers in (("1x1", [("1x1", c1, 1, 0)]),
                               ("3x3", [("3x3_reduce", r3, 1, 0), ("3x3", c3, 3, 1)]),
                               ("5x5", [("5x5_reduce", r5, 1, 0), ("5x5", c5, 5, 2)])):
            x = bottom
            for nm, n, k, pad in layers:
                w.conv(p + nm, x, p + nm, n, k, 1, pad)
                w.relu(p + "relu_" + nm, p + nm)
                x = p + nm
            outs.append(x)
        w.pool(p + "pool", bottom, p + "pool", "MAX", 3, 1, 1)
        w.conv(p + "pool_proj", p + "pool", p + "pool_proj", pp, 1)
        w.relu(p + "relu_pool_proj", p + "pool_proj")
        outs.append(p + "pool_proj")
        w.add('layer { name: "%soutput" type: "Concat" %s top: "%soutput" }'
              % (p, " ".join('bottom: "%s"' % o for o in outs), p))
        bottom = p + "output"
    w.add('layer { name: "pool5/7x7_s1" type: "Pooling" bottom: "%s" top: "pool5/7x7_s1" '
          'pooling_param { pool: AVE kernel_size: 7 stride: 1 } }' % bottom)
    w.add('layer { name: "pool5/drop_7x7_s1" type: "Dropout" bottom: "pool5/7x7_s1" '
          'top: "pool5/7x7_s1" dropout_param { dropout_ratio: 0.4 } }')
    w.fc("loss3/classifier", "pool5/7x7_s1", "loss3/classifier", 1000)
    w.softmax("loss3/classifier")
    w.write("googlenet_deploy.prototxt")


def mobilenet():
    """MobileNet v1 (shicai/MobileNet-Caffe layout: depthwise = grouped Convolution)."""
    w = _Writer("MobileNet", (1, 3, 224, 224))
    w.conv("conv1", "data", "conv1", 32, 3, 2, 1, bias=False)
    w.bn_scale("conv1/bn", "conv1/scale", "conv1")
    w.relu("relu1", "conv1")
    bottom, c = "conv1", 32
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
        [(1024, 2), (1024, 1)]
    for i, (n, s) in enumerate(plan):
        tag = str(i + 2)
        dw, sep = "conv%s/dw" % tag, "conv%s/sep" % tag
        w.conv(dw, bottom, dw, c, 3, s, 1, group=c, bias=False)
        w.bn_scale(dw + "/bn", dw + "/scale", dw)
        w.relu("relu%s/dw" % tag, dw)
        w.conv(sep, dw, sep, n, 1, 1, 0, bias=False)
        w.bn_scale(sep + "/bn", sep + "/scale", sep)
        w.relu("relu%s/sep" % tag, sep)
        bottom, c = sep, n
    w.gpool("pool6", bottom, "pool6")
    w.conv("fc7", "pool6", "fc7", 1000, 1)
    w.softmax("fc7")
    w.write("mobilenet_deploy.prototxt")


if __name__ == "__main__":
    vgg16()
    resnet50()
    googlenet()
    mobilenet()
