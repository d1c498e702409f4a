"""Small versions of well-known architectures for the exporter tests (no downloads).

Widths and inputs are tiny so the whole zoo exports and verifies in seconds; the
structure (ops, their arguments, how blocks are wired) is what matters.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def randomize(model, seed=0):
    """Random weights and non-trivial BatchNorm statistics (eval mode)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                    m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return model.eval()


def conv_bn(cin, cout, k=3, s=1, p=None, groups=1, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2 if p is None else p, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class AlexNet(nn.Module):
    def __init__(self, w=8, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(w, 2 * w, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(2 * w, 3 * w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(3 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(2 * w * 4, 32), nn.ReLU(inplace=True),
            nn.Dropout(), nn.Linear(32, 32), nn.ReLU(inplace=True), nn.Linear(32, classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class VGG11BN(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        cfg = [8, "M", 16, "M", 16, 16, "M", 32, 32, "M", 32, 32, "M"]
        layers, cin = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, widths=(8, 16, 32, 64), classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18():
    return ResNet(BasicBlock, [2, 2, 2, 2])


def resnet50_style():
    return ResNet(Bottleneck, [1, 2, 1, 1], widths=(4, 8, 8, 16))


class Fire(nn.Module):
    def __init__(self, cin, squeeze, e1, e3):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(16, 4, 8, 8), Fire(16, 4, 8, 8), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(16, 8, 16, 16))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(32, classes, 1),
                                        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [] if expand == 1 else [conv_bn(cin, hidden, 1, act=nn.ReLU6)]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   conv_bn(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 8, 3, 2, act=nn.ReLU6), InvertedResidual(8, 8, 1, 1),
            InvertedResidual(8, 12, 2, 6), InvertedResidual(12, 12, 1, 6),
            InvertedResidual(12, 16, 2, 6), conv_bn(16, 32, 1, act=nn.ReLU6))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class SqueezeExcitation(nn.Module):
    def __init__(self, c, squeeze, act=nn.ReLU, gate=nn.Hardsigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.act = act()
        self.gate = gate()

    def forward(self, x):
        s = self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))
        return x * s


class MobileNetV3Small(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = conv_bn(3, 8, 3, 2, act=nn.Hardswish)
        self.block1 = nn.Sequential(conv_bn(8, 8, 3, 2, groups=8), SqueezeExcitation(8, 8),
                                    conv_bn(8, 8, 1, act=None))
        self.block2 = nn.Sequential(conv_bn(8, 24, 1, act=nn.Hardswish),
                                    conv_bn(24, 24, 5, 2, groups=24, act=nn.Hardswish),
                                    SqueezeExcitation(24, 8), conv_bn(24, 16, 1, act=None))
        self.last = conv_bn(16, 48, 1, act=nn.Hardswish)
        self.classifier = nn.Sequential(nn.Linear(48, 64), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(64, classes))

    def forward(self, x):
        x = self.last(self.block2(self.block1(self.stem(x))))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def channel_shuffle(x, groups):
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        branch = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin, act=None),
                                         conv_bn(cin, branch, 1))
        b2_in = cin if stride > 1 else branch
        self.branch2 = nn.Sequential(conv_bn(b2_in, branch, 1),
                                     conv_bn(branch, branch, 3, stride, groups=branch, act=None),
                                     conv_bn(branch, branch, 1))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = conv_bn(3, 8, 3, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.stage2 = nn.Sequential(ShuffleUnit(8, 16, 2), ShuffleUnit(16, 16, 1))
        self.stage3 = nn.Sequential(ShuffleUnit(16, 32, 2), ShuffleUnit(32, 32, 1))
        self.conv5 = conv_bn(32, 64, 1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.conv5(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(x.mean([2, 3]))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * growth)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features):
        x = torch.cat(features, 1)
        x = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(x)))


class DenseNetBlock(nn.Module):
    def __init__(self, cin=8, growth=4, n=3, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, cin, 3, padding=1)
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth) for i in range(n))
        c = cin + n * growth
        self.transition = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1),
                                        nn.AvgPool2d(2, 2))
        self.fc = nn.Linear(c // 2, classes)

    def forward(self, x):
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(features))
        x = self.transition(torch.cat(features, 1))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InceptionBlock(nn.Module):
    def __init__(self, cin=8):
        super().__init__()
        self.stem = nn.Conv2d(3, cin, 3, 2)
        self.pool0 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.b1 = conv_bn(cin, 8, 1)
        self.b3 = nn.Sequential(conv_bn(cin, 4, 1), conv_bn(4, 8, 3))
        self.b5 = nn.Sequential(conv_bn(cin, 4, 1), conv_bn(4, 8, 5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv_bn(cin, 8, 1))
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.avg = nn.AvgPool2d(3, 2, ceil_mode=True)

    def forward(self, x):
        x = self.pool0(self.stem(x))
        x = torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)
        return self.avg(self.pool1(x))


class MBConv(nn.Module):
    def __init__(self, cin, cout, expand=4, stride=1):
        super().__init__()
        hidden = cin * expand
        self.expand = conv_bn(cin, hidden, 1, act=nn.SiLU)
        self.dw = conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.SiLU)
        self.se = SqueezeExcitation(hidden, max(1, cin // 4), act=nn.SiLU, gate=nn.Sigmoid)
        self.project = conv_bn(hidden, cout, 1, act=None)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.project(self.se(self.dw(self.expand(x))))
        return out + x if self.residual else out


class EfficientNetBlock(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = conv_bn(3, 8, 3, 2, act=nn.SiLU)
        self.blocks = nn.Sequential(MBConv(8, 8), MBConv(8, 16, stride=2))
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


class UNet(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.enc1 = nn.Sequential(conv_bn(3, 8), conv_bn(8, 8))
        self.enc2 = nn.Sequential(conv_bn(8, 16), conv_bn(16, 16))
        self.bottom = nn.Sequential(conv_bn(16, 32), conv_bn(32, 32))
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec2 = nn.Sequential(conv_bn(32, 16), conv_bn(16, 16))
        self.dec1 = nn.Sequential(conv_bn(16 + 8, 8), conv_bn(8, 8))
        self.out = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottom(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        up = F.interpolate(d2, scale_factor=2, mode="bilinear", align_corners=False)
        return self.out(self.dec1(torch.cat([up, e1], 1)))


class FCNHead(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.backbone = nn.Sequential(conv_bn(3, 8, 3, 2), conv_bn(8, 16, 3, 2),
                                      conv_bn(16, 16, 3, 2))
        self.head = nn.Sequential(conv_bn(16, 8, 3), nn.Dropout(0.1), nn.Conv2d(8, classes, 1))

    def forward(self, x):
        y = self.head(self.backbone(x))
        return F.interpolate(y, scale_factor=8, mode="bilinear", align_corners=False)


class SSDHead(nn.Module):
    def __init__(self, classes=4, anchors=(4, 6)):
        super().__init__()
        self.base = nn.Sequential(conv_bn(3, 8, 3, 2), conv_bn(8, 16, 3, 2))
        self.extra = conv_bn(16, 16, 3, 2)
        self.loc = nn.ModuleList(nn.Conv2d(16, a * 4, 3, padding=1) for a in anchors)
        self.conf = nn.ModuleList(nn.Conv2d(16, a * classes, 3, padding=1) for a in anchors)

    def forward(self, x):
        f1 = self.base(x)
        f2 = self.extra(f1)
        locs, confs = [], []
        for f, loc, conf in zip((f1, f2), self.loc, self.conf):
            locs.append(torch.flatten(loc(f).permute(0, 2, 3, 1), 1))
            confs.append(torch.flatten(conf(f).permute(0, 2, 3, 1), 1))
        return torch.cat(locs, 1), torch.cat(confs, 1)


class TextCNN(nn.Module):
    def __init__(self, vocab=50, dim=12, classes=4, widths=(2, 3, 4), filters=6):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.convs = nn.ModuleList(nn.Conv2d(1, filters, (k, dim)) for k in widths)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(filters * len(widths), classes)

    def forward(self, tokens):
        x = self.embedding(tokens).unsqueeze(1)          # N, 1, L, D
        pooled = [torch.max(F.relu(conv(x)).squeeze(3), dim=2)[0] for conv in self.convs]
        return F.log_softmax(self.fc(self.dropout(torch.cat(pooled, 1))), dim=1)


def text_tokens():
    return torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(1))


# name -> (factory, example input, target, OpenCV cross-check: False where OpenCV 4 lacks a
# layer -- Clip for ReLU6 / hard-sigmoid, Embed)
ZOO = {
    "alexnet": (AlexNet, lambda: torch.randn(1, 3, 99, 99), "bvlc", True),
    "vgg11_bn": (VGG11BN, lambda: torch.randn(1, 3, 32, 32), "bvlc", True),
    "resnet18": (resnet18, lambda: torch.randn(1, 3, 64, 64), "bvlc", True),
    "resnet50_style": (resnet50_style, lambda: torch.randn(1, 3, 48, 48), "bvlc", True),
    "squeezenet": (SqueezeNet, lambda: torch.randn(1, 3, 47, 47), "bvlc", True),
    "mobilenet_v2": (MobileNetV2, lambda: torch.randn(1, 3, 32, 32), "bvlc", False),
    "mobilenet_v3_small": (MobileNetV3Small, lambda: torch.randn(1, 3, 32, 32), "bvlc", False),
    "shufflenet_v2": (ShuffleNetV2, lambda: torch.randn(1, 3, 32, 32), "ssd", True),
    "densenet_block": (DenseNetBlock, lambda: torch.randn(1, 3, 16, 16), "bvlc", True),
    "inception_block": (InceptionBlock, lambda: torch.randn(1, 3, 40, 40), "bvlc", True),
    "efficientnet_block": (EfficientNetBlock, lambda: torch.randn(1, 3, 32, 32), "bvlc", True),
    "unet": (UNet, lambda: torch.randn(1, 3, 32, 32), "bvlc", True),
    "fcn_head": (FCNHead, lambda: torch.randn(1, 3, 32, 32), "bvlc", True),
    "ssd_head": (SSDHead, lambda: torch.randn(1, 3, 32, 32), "ssd", True),
    "text_cnn": (TextCNN, text_tokens, "bvlc", False),
}
