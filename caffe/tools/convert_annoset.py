"""Convert images and their annotations to an LMDB / LevelDB of
``AnnotatedDatum`` records, as the SSD fork's ``convert_annoset`` does.

Usage:
    python -m caffe.tools.convert_annoset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME

``--anno_type=detection``: LISTFILE lines are ``image annotation`` (paths
relative to ROOTFOLDER); annotations are VOC xml, COCO-style json or txt
(``label xmin ymin xmax ymax`` per line), boxes normalized by the image size
(xml/json: the size they declare), grouped per class in order of first
appearance with instance ids counting within a class; class names map to
labels through ``--label_map_file``.  ``--anno_type=classification``: lines
are ``image label``.  Keys are ``%08d_<image path>``; records are written in
list order (or shuffled) exactly as the fork's reader expects them.
"""
import json
import os
import random
import sys
import xml.etree.ElementTree as ET

from caffe.tools import RecordWriter, guess_encoding, log, run_tool

USAGE = ('Convert a set of images and annotations to the leveldb/lmdb\n'
         'format used as input for Caffe.\n'
         'Usage:\n'
         '    convert_annoset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME\n')

FLAGS_SPEC = {
    'gray': (bool, False, 'When this option is on, treat images as grayscale ones'),
    'shuffle': (bool, False, 'Randomly shuffle the order of images and their labels'),
    'backend': (str, 'lmdb', 'The backend {lmdb, leveldb} for storing the result'),
    'anno_type': (str, 'classification',
                  'The type of annotation {classification, detection}.'),
    'label_type': (str, 'xml', 'The type of annotation file format.'),
    'label_map_file': (str, '', 'A file with LabelMap protobuf message.'),
    'check_label': (bool, False,
                    'When this option is on, check that there is no duplicated name/label.'),
    'min_dim': (int, 0, 'Minimum dimension images are resized to (keep same aspect ratio)'),
    'max_dim': (int, 0, 'Maximum dimension images are resized to (keep same aspect ratio)'),
    'resize_width': (int, 0, 'Width images are resized to'),
    'resize_height': (int, 0, 'Height images are resized to'),
    'check_size': (bool, False,
                   'When this option is on, check that all the datum have the same size'),
    'encoded': (bool, False, 'When this option is on, the encoded image will be save in datum'),
    'encode_type': (str, '',
                    "Optional: What type should we encode the image as ('png','jpg',...)."),
}


class ConvertError(RuntimeError):
    pass


def read_label_map(path):
    """A LabelMap prototxt -> the message (read through protoio, the one owner
    of proto files: errors name the file, line and field)."""
    from caffe import protoio
    try:
        return protoio.read_text(path, protoio.schema().LabelMap())
    except (OSError, protoio.CaffeFileError) as e:
        raise ConvertError('Failed to read label map file {}: {}'.format(path, e)) from e


def name_to_label(label_map, strict):
    """MapNameToLabel; ``strict`` rejects duplicated names."""
    out = {}
    for item in label_map.item:
        if strict and item.name in out:
            raise ConvertError('There are many duplicates of name: {}'.format(item.name))
        out[item.name] = item.label
    return out


def read_image(filename, height, width, min_dim, max_dim, is_color):
    """ReadImageToCVMat with the fork's min_dim/max_dim (aspect-keeping) resize."""
    import cv2
    import numpy as np
    img = cv2.imread(filename, cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    if min_dim > 0 or max_dim > 0:
        rows, cols = img.shape[:2]
        lo, hi = min(rows, cols), max(rows, cols)
        scale = np.float32(1)
        if min_dim > 0 and lo < min_dim:
            scale = np.float32(min_dim) / np.float32(lo)
        if max_dim > 0 and int(scale * np.float32(hi)) > max_dim:
            scale = np.float32(max_dim) / np.float32(hi)
        if scale != 1:
            img = cv2.resize(img, (0, 0), fx=float(scale), fy=float(scale),
                             interpolation=cv2.INTER_LINEAR)
    elif height > 0 and width > 0:
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    return img


def _match_ext(filename, encoding):
    p = filename.rfind('.')
    ext = (filename[p + 1:] if p >= 0 else filename).lower()
    enc = encoding.lower()
    return ext == enc or (enc == 'jpg' and ext == 'jpeg')


def read_image_to_datum(filename, label, height, width, min_dim, max_dim, is_color,
                        encoding, datum):
    """ReadImageToDatum (the fork's, with min_dim/max_dim). False if unreadable."""
    import cv2
    import numpy as np
    img = read_image(filename, height, width, min_dim, max_dim, is_color)
    if img is None:
        return False
    ch = 1 if img.ndim == 2 else img.shape[2]
    if encoding:
        if (ch == 3) == is_color and not height and not width and not min_dim \
                and not max_dim and _match_ext(filename, encoding):
            datum.channels, datum.height, datum.width = ch, img.shape[0], img.shape[1]
            with open(filename, 'rb') as f:
                datum.data = f.read()
            datum.label = label
            datum.encoded = True
            return True
        ok, buf = cv2.imencode('.' + encoding, img)
        if not ok:
            raise ConvertError('cannot encode {} as {!r}'.format(filename, encoding))
        datum.data = buf.tobytes()
        datum.channels, datum.height, datum.width = ch, img.shape[0], img.shape[1]
        datum.encoded = True
        datum.label = label
        return True
    hwc = img if img.ndim == 3 else img[:, :, None]
    datum.channels, datum.height, datum.width = ch, hwc.shape[0], hwc.shape[1]
    datum.ClearField('float_data')
    datum.encoded = False
    datum.data = np.ascontiguousarray(hwc.transpose(2, 0, 1)).tobytes()
    datum.label = label
    return True


class _Groups:
    """Builds annotation groups the way the fork's readers do: one group per
    label in order of first appearance, instance ids counting within it."""

    def __init__(self, anno_datum):
        self.ad = anno_datum

    def add(self, label):
        for g in self.ad.annotation_group:
            if g.group_label == label:
                inst = g.annotation[-1].instance_id + 1 if len(g.annotation) else 0
                a = g.annotation.add()
                a.instance_id = inst
                return a
        g = self.ad.annotation_group.add()
        g.group_label = label
        a = g.annotation.add()
        a.instance_id = 0
        return a


def _set_box(a, x1, y1, x2, y2, w, h, difficult):
    import numpy as np
    f = np.float32
    b = a.bbox
    b.xmin = float(f(x1) / f(w))
    b.ymin = float(f(y1) / f(h))
    b.xmax = float(f(x2) / f(w))
    b.ymax = float(f(y2) / f(h))
    b.difficult = bool(difficult)


def _int_or_zero(text):
    """boost ptree get<int>(path, 0): the integer, or 0 when it is not one."""
    try:
        return int((text or '').strip())
    except ValueError:
        return 0


def read_xml(path, img_h, img_w, names, anno_datum):
    """ReadXMLToAnnotatedDatum (VOC): boxes in pixels, normalized by <size>."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise ConvertError('{}: cannot parse the xml: {}'.format(path, e)) from e
    size = root.find('size')
    try:
        h = int(size.find('height').text)
        w = int(size.find('width').text)
    except (AttributeError, TypeError, ValueError):
        log('W', 'When parsing {}: no valid size, using the image size'.format(path))
        h, w = img_h, img_w
    if h != img_h:
        log('W', '{} inconsistent image height.'.format(path))
    if w != img_w:
        log('W', '{} inconsistent image width.'.format(path))
    if not (w and h):
        raise ConvertError('{} no valid image width/height.'.format(path))
    groups = _Groups(anno_datum)
    for obj in root.findall('object'):
        anno = None
        difficult = False
        box = None
        for child in obj:   # the fork reads the children in document order
            if child.tag == 'name':
                name = (child.text or '').strip()
                if name not in names:
                    raise ConvertError('{}: Unknown name: {}'.format(path, name))
                anno = groups.add(names[name])
            elif child.tag == 'difficult':
                difficult = (child.text or '').strip() == '1'
            elif child.tag == 'bndbox':
                if anno is None:
                    raise ConvertError('{}: <bndbox> before <name> in an object'.format(path))
                box = [_int_or_zero(child.findtext(k)) for k in ('xmin', 'ymin', 'xmax', 'ymax')]
                _check_box(path, box, w, h)
                _set_box(anno, *box, w, h, difficult)
        if box is None and anno is not None:
            anno.bbox.difficult = difficult


def _check_box(path, box, w, h):
    x1, y1, x2, y2 = box
    if x1 > w or y1 > h or x2 > w or y2 > h or min(box) < 0:
        log('W', '{} bounding box exceeds image boundary.'.format(path))
    if x1 > x2 or y1 > y2:
        log('W', '{} bounding box irregular.'.format(path))


def read_json(path, img_h, img_w, names, anno_datum):
    """ReadJSONToAnnotatedDatum (COCO-style: bbox is [x, y, width, height])."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ConvertError('{}: cannot parse the json: {}'.format(path, e)) from e
    try:
        h, w = int(doc['image']['height']), int(doc['image']['width'])
    except (KeyError, TypeError, ValueError):
        h, w = img_h, img_w
    if not (w and h):
        raise ConvertError('{} no valid image width/height.'.format(path))
    groups = _Groups(anno_datum)
    for obj in doc.get('annotation', []):
        name = str(obj.get('category_id'))
        if name not in names:
            raise ConvertError('{}: Unknown name: {}'.format(path, name))
        anno = groups.add(names[name])
        bb = obj.get('bbox', [])
        if len(bb) != 4:
            raise ConvertError('{}: bbox must have 4 numbers'.format(path))
        x1, y1 = float(bb[0]), float(bb[1])
        box = [x1, y1, x1 + float(bb[2]), y1 + float(bb[3])]
        _check_box(path, box, w, h)
        _set_box(anno, *box, w, h, bool(int(obj.get('iscrowd', 0))))


def read_txt(path, img_h, img_w, anno_datum):
    """ReadTxtToAnnotatedDatum: ``label xmin ymin xmax ymax`` per line (pixels)."""
    groups = _Groups(anno_datum)
    with open(path) as f:
        toks = f.read().split()
    for k in range(0, len(toks) - 4, 5):
        try:
            label = int(toks[k])
            box = [float(t) for t in toks[k + 1:k + 5]]
        except ValueError:
            break
        anno = groups.add(label)
        _check_box(path, box, img_w, img_h)
        _set_box(anno, *box, img_w, img_h, False)


def convert_annoset(root_folder, listfile, db_name, gray=False, shuffle=False, backend='lmdb',
                    anno_type='classification', label_type='xml', label_map_file='',
                    check_label=False, min_dim=0, max_dim=0, resize_width=0, resize_height=0,
                    check_size=False, encoded=False, encode_type='', show_progress=True):
    """Library form of the tool.  Returns ``(written, failed_files)``."""
    import cv2

    from caffe.proto import caffe_pb2
    from caffe.tools._db import open_db

    if anno_type not in ('classification', 'detection'):
        raise ConvertError('--anno_type must be classification or detection, got {!r}'
                           .format(anno_type))
    if anno_type == 'detection' and label_type not in ('xml', 'json', 'txt'):
        raise ConvertError('Unknown label file type: {!r} (--label_type xml, json or txt)'
                           .format(label_type))
    try:
        with open(listfile) as f:
            toks = f.read().split()
    except OSError as e:
        raise ConvertError('cannot open list file {}: {}'.format(listfile, e)) from e
    names = {}
    if anno_type == 'detection':
        names = name_to_label(read_label_map(label_map_file), check_label)
    lines = []
    for k in range(0, len(toks) - 1, 2):
        second = toks[k + 1]
        if anno_type == 'classification':
            try:
                second = int(second)
            except ValueError:
                break   # the fork's `infile >> filename >> label` stops here
        lines.append((toks[k], second))
    if shuffle:
        log('I', 'Shuffling data')
        random.shuffle(lines)
    log('I', 'A total of {} images.'.format(len(lines)))
    if encode_type and not encoded:
        log('I', 'encode_type specified, assuming encoded=true.')
    min_dim, max_dim = max(0, min_dim), max(0, max_dim)
    resize_height, resize_width = max(0, resize_height), max(0, resize_width)
    is_color = not gray
    db = open_db(db_name, backend, 'w')
    data_size = None
    failed = []
    with RecordWriter(db, len(lines), 'convert_annoset', show_progress) as out:
        for line_id, (fname, second) in enumerate(lines):
            out.step()
            enc = guess_encoding(fname, encode_type, encoded)
            path = root_folder + fname
            ad = caffe_pb2.AnnotatedDatum()
            label = second if anno_type == 'classification' else -1
            if not read_image_to_datum(path, label, resize_height, resize_width, min_dim,
                                       max_dim, is_color, enc, ad.datum):
                log('W', 'Failed to read {}'.format(fname))
                failed.append(path)
                continue
            if anno_type == 'detection':
                ad.type = caffe_pb2.AnnotatedDatum.BBOX
                labelfile = root_folder + second
                if os.path.exists(labelfile):
                    img = cv2.imread(path)
                    h, w = img.shape[:2]
                    if label_type == 'xml':
                        read_xml(labelfile, h, w, names, ad)
                    elif label_type == 'json':
                        read_json(labelfile, h, w, names, ad)
                    else:
                        read_txt(labelfile, h, w, ad)
            if check_size:
                size = ad.datum.channels * ad.datum.height * ad.datum.width
                if data_size is None:
                    data_size = size
                elif len(ad.datum.data) != data_size:
                    raise ConvertError('Incorrect data field size {} (file {})'
                                       .format(len(ad.datum.data), path))
            out.put(line_id, fname, ad)
    return out.count, failed


def main(argv=None):
    from caffe.data.db import DBError
    return run_tool('convert_annoset', USAGE, FLAGS_SPEC, argv, 3, None,
                    lambda flags, args: convert_annoset(*args[:3], **flags),
                    (ConvertError, DBError, OSError))


if __name__ == '__main__':
    sys.exit(main())
