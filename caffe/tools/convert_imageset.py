"""Convert a set of images to an LMDB / LevelDB of Caffe ``Datum`` records.

Usage:
    python -m caffe.tools.convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME

LISTFILE lines are ``relative/path label`` (split at the last space).  Images
are read with OpenCV as Caffe's ``ReadImageToDatum`` does: BGR (or grey),
optionally resized with bilinear interpolation, stored as uint8 C x H x W;
with ``-encoded`` the (re-)encoded image bytes are stored instead.  Keys are
``%08d_<path>`` of the line index and path.  Images that cannot be read are
reported (naming the file) and skipped, as in Caffe.
"""
import os
import random
import sys

from caffe._extras import require
from caffe.tools import RecordWriter, guess_encoding, log, run_tool

USAGE = ('Convert a set of images to the leveldb/lmdb\n'
         'format used as input for Caffe.\n'
         'Usage:\n'
         '    convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME\n')

FLAGS_SPEC = {
    'gray': (bool, False,
             'When this option is on, treat images as grayscale ones'),
    'shuffle': (bool, False,
                'Randomly shuffle the order of images and their labels'),
    'backend': (str, 'lmdb',
                'The backend {lmdb, leveldb} for storing the result'),
    'resize_width': (int, 0, 'Width images are resized to'),
    'resize_height': (int, 0, 'Height images are resized to'),
    'check_size': (bool, False, 'When this option is on, check that all '
                   'the datum have the same size'),
    'encoded': (bool, False,
                'When this option is on, the encoded image will be save in '
                'datum'),
    'encode_type': (str, '', "Optional: What type should we encode the "
                    "image as ('png','jpg',...)."),
}


class ConvertError(RuntimeError):
    pass


def _atoi(text):
    """C atoi: optional whitespace and sign, then leading digits; else 0."""
    s = text.lstrip(' \t\n\v\f\r')
    j = 0
    if j < len(s) and s[j] in '+-':
        j += 1
    k = j
    while k < len(s) and s[k].isdigit() and s[k] in '0123456789':
        k += 1
    if k == j:
        return 0
    return int(s[:k])


def read_list(listfile):
    """``[(path, label)]`` from a Caffe list file."""
    with open(listfile, 'rb') as f:
        text = f.read().decode('utf-8', 'surrogateescape')
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    out = []
    for line in lines:
        pos = line.rfind(' ')
        if pos < 0:
            out.append((line, _atoi(line)))
        else:
            out.append((line[:pos], _atoi(line[pos + 1:])))
    return out


def _match_ext(filename, encoding):
    p = filename.rfind('.')
    ext = filename[p + 1:] if p >= 0 else filename
    ext, enc = ext.lower(), encoding.lower()
    return ext == enc or (enc == 'jpg' and ext == 'jpeg')


def read_image(filename, height=0, width=0, is_color=True):
    """Caffe's ReadImageToCVMat: HxWxC uint8 BGR (or HxW grey) or None."""
    cv2 = require('cv2', 'convert_imageset (reading images)')
    flag = cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE
    img = cv2.imread(filename, flag)
    if img is None:
        return None
    if height > 0 and width > 0:
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    return img


def mat_to_datum(img, datum):
    """Caffe's CVMatToDatum: HWC uint8 -> CHW bytes in ``datum``."""
    import numpy as np
    if img.dtype != np.uint8:
        raise ConvertError('Image data type must be unsigned byte')
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    datum.channels, datum.height, datum.width = c, h, w
    datum.ClearField('data')
    datum.ClearField('float_data')
    datum.encoded = False
    datum.data = np.ascontiguousarray(img.transpose(2, 0, 1)).tobytes()


def read_image_to_datum(filename, label, height, width, is_color, encoding,
                        datum):
    """Caffe's ReadImageToDatum.  Returns False when the image cannot be
    read."""
    cv2 = require('cv2', 'convert_imageset (encoding images)')
    img = read_image(filename, height, width, is_color)
    if img is None:
        return False
    if encoding:
        channels = 1 if img.ndim == 2 else img.shape[2]
        if ((channels == 3) == is_color and not height and not width
                and _match_ext(filename, encoding)):
            with open(filename, 'rb') as f:
                datum.data = f.read()
            datum.label = label
            datum.encoded = True
            return True
        try:
            ok, buf = cv2.imencode('.' + encoding, img)
        except cv2.error as e:
            raise ConvertError('cannot encode {} as {!r}: {}'.format(
                filename, encoding, e)) from e
        if not ok:
            raise ConvertError('cannot encode {} as {!r}'.format(
                filename, encoding))
        datum.data = buf.tobytes()
        datum.label = label
        datum.encoded = True
        return True
    mat_to_datum(img, datum)
    datum.label = label
    return True


def convert_imageset(root_folder, listfile, db_name, gray=False,
                     shuffle=False, backend='lmdb', resize_width=0,
                     resize_height=0, check_size=False, encoded=False,
                     encode_type='', show_progress=True):
    """Library form of the tool.  Returns ``(written, failed_files)``."""
    from caffe import atomic
    from caffe.data.db import DBError

    is_color = not gray
    if not os.path.isfile(listfile):
        raise ConvertError('cannot open list file {}'.format(listfile))
    lines = read_list(listfile)
    if shuffle:
        log('I', 'Shuffling data')
        random.shuffle(lines)
    log('I', 'A total of {} images.'.format(len(lines)))
    if encode_type and not encoded:
        log('I', 'encode_type specified, assuming encoded=true.')
    resize_height = max(0, resize_height)
    resize_width = max(0, resize_width)

    if os.path.exists(db_name):
        raise DBError('mkdir {} failed: the database already exists'.format(db_name))
    # built under a temporary name and renamed when complete: an interrupted
    # run never leaves a half-written database under db_name
    with atomic.atomic_dir(db_name) as tmp_db:
        count, failed = _write_db(root_folder, lines, tmp_db, db_name, backend, is_color,
                                  resize_height, resize_width, check_size, encoded,
                                  encode_type, show_progress)
    if failed:
        log('W', '{} of {} images could not be read and were skipped: {}'
            .format(len(failed), len(lines),
                    ', '.join(failed[:5]) + (' ...' if len(failed) > 5
                                             else '')))
    return count, failed


def _write_db(root_folder, lines, path, db_name, backend, is_color, resize_height,
              resize_width, check_size, encoded, encode_type, show_progress):
    """Write the database at ``path`` (logged as ``db_name``)."""
    from caffe import protoio
    from caffe.data.db import open_db
    db = open_db(path, backend, 'w')
    log('I', 'Opened {} {}'.format(backend, db_name))
    data_size = None
    failed = []
    with RecordWriter(db, len(lines), 'convert_imageset', show_progress) as out:
        for line_id, (fname, label) in enumerate(lines):
            out.step()
            enc = guess_encoding(fname, encode_type, encoded)
            path = root_folder + fname
            datum = protoio.schema().Datum()
            if not read_image_to_datum(path, label, resize_height,
                                       resize_width, is_color, enc, datum):
                log('E', 'Could not open or find file {}'.format(path))
                failed.append(path)
                continue
            if check_size:
                if data_size is None:
                    data_size = datum.channels * datum.height * datum.width
                elif len(datum.data) != data_size:
                    raise ConvertError(
                        'Check failed: data.size() == data_size ({} vs. {}) '
                        'Incorrect data field size {} (file {})'.format(
                            len(datum.data), data_size, len(datum.data),
                            path))
            out.put(line_id, fname, datum)
    return out.count, failed


def main(argv=None):
    from caffe.data.db import DBError
    return run_tool('convert_imageset', USAGE, FLAGS_SPEC, argv, 3, None,
                    lambda flags, args: convert_imageset(*args[:3], **flags),
                    (ConvertError, DBError, OSError))


if __name__ == '__main__':
    sys.exit(main())
