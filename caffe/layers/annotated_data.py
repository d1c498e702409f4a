"""AnnotatedData, the SSD fork's data layer (``annotated_data_layer.cpp``).

Reads AnnotatedDatum records (an image Datum plus groups of boxes) from an
LMDB/LevelDB, runs the fork's chain per image -- distort, expand, one crop
picked among the ``batch_sampler`` candidates, then resize / crop / mirror /
mean / scale -- and emits the data top and, for BBOX annotations, a label top
``1 x 1 x G x 8`` of rows ``[item, group_label, instance_id, xmin, ymin,
xmax, ymax, difficult]`` (one row of -1 when the batch has no box).  Batches
are prefetched in a background thread like the other database layers.
"""
import logging

import numpy as np

from .. import _common
from .. import ssd_augment as aug
from .data import DataLayerError, _cursor_advance, _CursorLoader, _PrefetchingLayer, _SharedDB, rank_share
from .registry import register_layer

logger = logging.getLogger("caffe")
TRAIN = 0
BBOX = 0


def annotation_rows(anno_datum):
    """AnnotatedDatum groups -> rows [group_label, instance, x1, y1, x2, y2, difficult]."""
    rows = []
    for g in anno_datum.annotation_group:
        for a in g.annotation:
            b = a.bbox
            rows.append((g.group_label, a.instance_id, b.xmin, b.ymin, b.xmax, b.ymax,
                         float(b.difficult)))
    return np.array(rows, dtype=np.float32).reshape(-1, 7)


class _ItemTransformer:
    """Per-image pipeline of the fork's DataTransformer for AnnotatedDatum."""

    def __init__(self, tp, phase, samplers, where, rng):
        self.tp = tp
        self.phase = phase
        self.samplers = samplers
        self.where = where
        self.rng = rng
        self.scale = np.float32(tp.scale)
        self.mean_values = list(tp.mean_value) or None
        self.mean = None
        if tp.HasField("mean_file"):
            if self.mean_values:
                raise DataLayerError("%s: cannot specify mean_file and mean_value at the "
                                     "same time" % where)
            from ..data_transformer import load_mean_file
            self.mean = load_mean_file(tp.mean_file, where)
        self.resize = tp.resize_param if tp.HasField("resize_param") else None
        if self.resize is not None and not (self.resize.height > 0 and self.resize.width > 0):
            raise DataLayerError("%s, transform_param.resize_param: height and width must be "
                                 "> 0" % where)
        if tp.HasField("expand_param") and not tp.expand_param.max_expand_ratio > 1:
            raise DataLayerError("%s, transform_param.expand_param: max_expand_ratio must be "
                                 "> 1" % where)
        if tp.HasField("noise_param"):
            raise DataLayerError("%s, transform_param.noise_param: the fork's noise "
                                 "augmentation is not implemented" % where)
        if tp.force_color and tp.force_gray:
            raise DataLayerError("%s: cannot set both force_color and force_gray" % where)
        self.emit = tp.emit_constraint if tp.HasField("emit_constraint") else None
        cs = int(tp.crop_size)
        self.crop_h, self.crop_w = (cs, cs) if cs else (int(tp.crop_h), int(tp.crop_w))

    def decode(self, datum):
        """HWC image of a Datum (uint8 for images, float32 for float_data)."""
        import cv2
        if datum.encoded:
            flag = cv2.IMREAD_COLOR if self.tp.force_color else \
                cv2.IMREAD_GRAYSCALE if self.tp.force_gray else cv2.IMREAD_UNCHANGED
            img = cv2.imdecode(np.frombuffer(datum.data, np.uint8), flag)
            if img is None:
                raise ValueError("could not decode the encoded Datum")
            return img
        c, h, w = datum.channels, datum.height, datum.width
        if len(datum.data):
            if len(datum.data) != c * h * w:
                raise ValueError("Datum holds %d bytes for %dx%dx%d" % (len(datum.data), c, h, w))
            arr = np.frombuffer(datum.data, np.uint8).reshape(c, h, w)
        else:
            arr = np.asarray(datum.float_data, np.float32).reshape(c, h, w)
        return arr.transpose(1, 2, 0).copy() if c > 1 else arr[0].copy()

    def output_shape(self, img):
        h, w = img.shape[:2]
        c = img.shape[2] if img.ndim == 3 else 1
        if self.resize is not None:
            w, h = aug.infer_new_size(self.resize, w, h)
        if h < self.crop_h or w < self.crop_w:
            raise ValueError("crop %dx%d is larger than the image (%dx%d)"
                             % (self.crop_h, self.crop_w, h, w))
        return [1, c, self.crop_h or h, self.crop_w or w]

    def augment(self, img, rows, encoded):
        """distort -> expand -> batch sampler crop (TRAIN-style steps; the fork
        runs them in every phase when configured)."""
        tp, rng = self.tp, self.rng
        if tp.HasField("distort_param"):
            if encoded:
                img = aug.reencode_jpeg(aug.apply_distort(img, tp.distort_param, rng))
            else:
                logger.error("%s: distort_param only supports encoded datums", self.where)
        if tp.HasField("expand_param"):
            before = img
            img, rows = aug.expand(img, rows, tp.expand_param, self.mean_values, rng)
            if encoded and img is not before:
                img = aug.reencode_jpeg(img)
        if self.samplers:
            boxes = aug.generate_batch_samples(rows, self.samplers, rng)
            if boxes:
                pick = boxes[int(rng.randint(len(boxes)))]
                img, rows = aug.crop(img, rows, pick)
                if encoded:
                    img = aug.reencode_jpeg(img)
        return img, rows

    def transform(self, img, rows, out):
        """Transform(cv::Mat) + TransformAnnotation: pixels into ``out`` (C, H, W)."""
        tp, rng = self.tp, self.rng
        h0, w0 = img.shape[:2]
        do_mirror = bool(tp.mirror) and rng.randint(2) == 1
        if self.resize is not None:
            img = aug.apply_resize(img, self.resize, rng)
        ih, iw = img.shape[:2]
        oh, ow = out.shape[1], out.shape[2]
        h_off = w_off = 0
        if self.crop_h > 0 and self.crop_w > 0:
            if self.phase == TRAIN:
                h_off = int(rng.randint(ih - self.crop_h + 1))
                w_off = int(rng.randint(iw - self.crop_w + 1))
            else:
                h_off, w_off = (ih - self.crop_h) // 2, (iw - self.crop_w) // 2
        crop_bbox = np.array([w_off / np.float32(iw), h_off / np.float32(ih),
                              (w_off + ow) / np.float32(iw), (h_off + oh) / np.float32(ih)],
                             dtype=np.float32)
        win = img[h_off:h_off + oh, w_off:w_off + ow]
        if win.shape[0] != oh or win.shape[1] != ow:
            raise ValueError("image of %dx%d after resize does not fill the %dx%d top"
                             % (ih, iw, oh, ow))
        chw = (win[None] if win.ndim == 2 else win.transpose(2, 0, 1)).astype(np.float32)
        c = chw.shape[0]
        if self.mean is not None:
            if self.mean.shape[0] != c or self.mean.shape[1:] != (ih, iw):
                raise ValueError("mean_file shape %s does not match the image %s"
                                 % (self.mean.shape, (c, ih, iw)))
            chw -= self.mean[:, h_off:h_off + oh, w_off:w_off + ow]
        elif self.mean_values is not None:
            mv = self.mean_values
            if len(mv) not in (1, c):
                raise ValueError("specify either 1 mean_value or as many as channels: %d" % c)
            chw -= np.asarray(mv * c if len(mv) == 1 else mv, np.float32).reshape(c, 1, 1)
        if self.scale != 1:
            chw *= self.scale
        if do_mirror:
            chw = chw[:, :, ::-1]
        out[...] = chw
        rows = aug.transform_annotation(rows, h0, w0, self.resize, crop_bbox, do_mirror,
                                        self.emit)
        return rows


class _AnnoLoader(_CursorLoader):
    """Reads AnnotatedDatums and builds batches in the prefetch thread."""

    def __init__(self, layer, db, item_tf, anno_type, output_labels, skip):
        super().__init__(db, layer.source, layer.batch_size, skip, rank_share(layer.phase),
                         layer.where())
        self.tf = item_tf
        self.anno_type = anno_type      # None: plain Datum labels
        self.override_type = layer.layer_param.annotated_data_param.HasField("anno_type")
        self.output_labels = output_labels
        self.fit_small = layer.fit_small
        from ..proto import caffe_pb2
        self.AnnotatedDatum = caffe_pb2.AnnotatedDatum

    def load_batch(self):
        ad = self.AnnotatedDatum()
        data = None
        labels = []
        plain = np.zeros(self.batch_size, np.float32)
        for item in range(self.batch_size):
            cur = self._record()
            key = cur.key()
            try:
                ad.ParseFromString(cur.value())
            except Exception as exc:
                raise self._error(key, "cannot parse the AnnotatedDatum: %s" % exc) from None
            try:
                img = self.tf.decode(ad.datum)
                rows = annotation_rows(ad)
                img, rows = self.tf.augment(img, rows, ad.datum.encoded)
                shape = self.tf.output_shape(img)
                if data is None:
                    data = np.empty([self.batch_size] + shape[1:], np.float32)
                elif list(data.shape[1:]) != shape[1:]:
                    raise ValueError("item shape %s differs from the batch's %s"
                                     % (tuple(shape[1:]), data.shape[1:]))
                if self.anno_type is not None and self.output_labels:
                    if not ad.HasField("type"):
                        raise ValueError("some datum misses AnnotationType")
                    if not self.override_type and int(ad.type) != self.anno_type:
                        raise ValueError("different AnnotationType (%d, first datum %d)"
                                         % (ad.type, self.anno_type))
                rows = self.tf.transform(img, rows, data[item])
            except (ValueError, aug.AugmentError) as exc:
                raise self._error(key, str(exc)) from None
            if self.anno_type is None:
                plain[item] = ad.datum.label
            else:
                labels.append(np.concatenate(
                    [np.full((len(rows), 1), item, np.float32), rows], 1))
            self._next()
        if self.anno_type is None:
            return data, plain
        rows = np.concatenate(labels, 0) if labels else np.zeros((0, 8), np.float32)
        if not len(rows):
            rows = np.full((1, 8), -1, np.float32)
        return data, rows.reshape(1, 1, -1, 8)


@register_layer("AnnotatedData")
class AnnotatedDataLayer(_PrefetchingLayer):
    num_tops = (1, 2)

    def __init__(self, layer_param, bottom_shapes, phase):
        super().__init__(layer_param, bottom_shapes, phase)
        p = layer_param.data_param
        self.source = p.source
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.error("batch_size must be positive", field="data_param.batch_size")
        self.backend = "lmdb" if p.backend == 1 else "leveldb"
        tp = layer_param.transform_param
        self.fit_small = tp.HasField("resize_param") and \
            int(tp.resize_param.resize_mode) == aug.FIT_SMALL_SIZE
        if self.fit_small and self.batch_size != 1:
            raise self.error("only batch_size 1 is supported with FIT_SMALL_SIZE",
                             field="data_param.batch_size")

    def setup(self, bottom, top):
        from ..data.db import DBError
        from ..proto import caffe_pb2
        self.output_labels = len(top) > 1
        ap = self.layer_param.annotated_data_param
        seed = int(_common.numpy_rng().randint(0, 2 ** 31 - 1))
        tf = _ItemTransformer(self.layer_param.transform_param, self.phase,
                              list(ap.batch_sampler), self.where(), np.random.RandomState(seed))
        try:
            db = _SharedDB.open(self.source, self.backend)
        except DBError as exc:
            raise self.data_error("cannot open the %s database: %s" % (self.backend, exc),
                                  self.source) from None
        skip = int(_common.numpy_rng().randint(self.layer_param.data_param.rand_skip)) \
            if self.layer_param.data_param.rand_skip else 0
        cur = db.cursor()
        try:
            if not cur.valid():
                raise self.data_error("the database is empty", self.source)
            for _ in range(skip):
                _cursor_advance(cur)
            key = cur.key()
            ad = caffe_pb2.AnnotatedDatum()
            try:
                ad.ParseFromString(cur.value())
                shape = tf.output_shape(tf.decode(ad.datum))
            except Exception as exc:
                raise self.data_error("key %r: %s" % (key.decode("utf-8", "replace"), exc),
                                      self.source) from None
        finally:
            cur.close()
        shape[0] = self.batch_size
        top[0].reshape(*shape)
        anno_type = None
        if self.output_labels:
            if ad.HasField("type") or ap.HasField("anno_type"):
                anno_type = int(ap.anno_type) if ap.HasField("anno_type") else int(ad.type)
                if ap.HasField("anno_type") and ad.HasField("type"):
                    logger.warning("%s: type stored in AnnotatedDatum is shadowed",
                                   self.where())
                if anno_type != BBOX:
                    raise self.error("unknown annotation type %d" % anno_type,
                                     field="annotated_data_param.anno_type")
                n = sum(len(g.annotation) for g in ad.annotation_group)
                top[1].reshape(1, 1, max(n, 1), 8)
            else:
                top[1].reshape(self.batch_size)
        self._start(_AnnoLoader(self, db, tf, anno_type, self.output_labels, skip))
