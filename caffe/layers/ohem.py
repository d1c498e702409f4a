"""BoxAnnotatorOHEM, R-FCN's online hard example mining (py-R-FCN's caffe,
``box_annotator_ohem_layer.cu``).

Bottoms: rois ``N x 5 (x H x W)`` (column 0 the image index), per-roi loss
``N x 1``, labels ``N x 1``, bbox loss weights ``N x B``.  Per image, the
``roi_per_img`` rois with the largest loss keep their label and bbox loss
weights; every other roi gets ``ignore_label`` and zero weights, so the
following loss layers train on the hard examples only.  No backward (the
fork's is empty).
"""
import torch

from .base import CaffeLayer
from .registry import register_layer


@register_layer("BoxAnnotatorOHEM")
class BoxAnnotatorOHEMLayer(CaffeLayer):
    num_bottoms = (4, 4)
    num_tops = (2, 2)

    def allow_force_backward(self, bottom_index):
        return False

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.box_annotator_ohem_param
        f = "box_annotator_ohem_param."
        if not p.HasField("roi_per_img"):
            raise self.error("roi_per_img is required", field=f + "roi_per_img")
        self.roi_per_img = int(p.roi_per_img)
        if self.roi_per_img <= 0:
            raise self.error("roi_per_img must be > 0", field=f + "roi_per_img")
        self.ignore_label = int(p.ignore_label)
        if len(bottom_shapes) == 4:
            self.output_shapes(bottom_shapes)

    @staticmethod
    def _nchw(s):
        s = tuple(s) + (1,) * (4 - len(s))
        return s[0], s[1], s[2], s[3]

    def output_shapes(self, bottom_shapes):
        rois, loss, labels, weights = (self._nchw(s) for s in bottom_shapes)
        n, c, h, w = rois
        if c != 5:
            raise self.error("rois must have 5 channels (image, x1, y1, x2, y2), got shape %s"
                             % (tuple(bottom_shapes[0]),), field="bottom")
        for i, s in ((1, loss), (2, labels)):
            if s != (n, 1, h, w):
                raise self.error("bottom %d must be %s, got %s"
                                 % (i, (n, 1, h, w), tuple(bottom_shapes[i])), field="bottom")
        if (weights[0], weights[2], weights[3]) != (n, h, w):
            raise self.error("bbox loss weights must be %d x B x %d x %d, got %s"
                             % (n, h, w, tuple(bottom_shapes[3])), field="bottom")
        return [(n, 1, h, w), (n, weights[1], h, w)]

    def run(self, bottoms, params):
        rois, loss, labels, weights = (b.detach() for b in bottoms)
        n, _, h, w = self._nchw(rois.shape)
        sd = h * w
        img = rois.reshape(n, 5, sd)[:, 0, :].reshape(-1).to(torch.int64)   # per roi
        if img.numel() and int(img.max()) < 0:
            raise self.error("number of images must be greater than 0 (no roi has an image "
                             "index >= 0)")
        flat_loss = loss.reshape(-1)
        order = torch.sort(flat_loss, descending=True, stable=True).indices
        img_sorted = img[order]
        # rank of each roi within its image, in descending loss order
        rank = torch.zeros_like(order)
        if order.numel():
            by_img = torch.sort(img_sorted, stable=True).indices   # keeps the loss order
            grouped = img_sorted[by_img]
            counts = torch.bincount(grouped - grouped.min())
            first = torch.cumsum(counts, 0) - counts
            pos = torch.arange(order.numel()) - first[grouped - grouped.min()]
            rank[order[by_img]] = pos
        keep = (rank < self.roi_per_img) & (img >= 0)
        top_labels = torch.where(keep, labels.reshape(-1),
                                 torch.full_like(labels.reshape(-1), float(self.ignore_label)))
        wts = weights.reshape(n, -1, sd)
        keep_w = keep.reshape(n, 1, sd).to(wts.dtype)
        top_w = wts * keep_w
        return [top_labels.reshape(n, 1, h, w), top_w.reshape(n, -1, h, w)]
