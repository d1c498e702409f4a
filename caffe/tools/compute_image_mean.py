"""Compute the mean image of a database of Caffe ``Datum`` records.

Usage:
    python -m caffe.tools.compute_image_mean [FLAGS] INPUT_DB [OUTPUT_FILE]

Numerics follow Caffe's ``tools/compute_image_mean.cpp``: per-element sums
accumulated in float32 in database order, divided by the record count in
float32, written as a binary ``BlobProto`` with the legacy
``num=1, channels, height, width`` shape; the per-channel means are logged
(``mean_value channel [c]: v``) from a sequential float32 sum.
"""
import sys

import numpy as np

from caffe._extras import require
from caffe.tools import log, progress, run_tool

USAGE = ('Compute the mean_image of a set of images given by a leveldb/lmdb\n'
         'Usage:\n'
         '    compute_image_mean [FLAGS] INPUT_DB [OUTPUT_FILE]\n')

FLAGS_SPEC = {
    'backend': (str, 'lmdb',
                'The backend {leveldb, lmdb} containing the images'),
}


class MeanError(RuntimeError):
    pass


def decode_datum_native(datum):
    """Caffe's DecodeDatumNative: an encoded Datum is decoded with
    ``cv2.imdecode(..., IMREAD_UNCHANGED)`` and replaced by raw CHW bytes.
    Returns True when it was encoded."""
    if not datum.encoded:
        return False
    cv2 = require('cv2', 'compute_image_mean (decoding encoded Datums)')
    from caffe.tools.convert_imageset import mat_to_datum
    img = cv2.imdecode(np.frombuffer(datum.data, dtype=np.uint8),
                       cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MeanError('Could not decode datum')
    mat_to_datum(img, datum)
    return True


def _datum_values(datum):
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8)
    return np.asarray(datum.float_data, dtype=np.float32)


def compute_image_mean(input_db, output_file=None, backend='lmdb'):
    """Library form of the tool.  Returns the ``BlobProto`` of the mean."""
    from caffe import protoio
    from caffe.data.db import open_db

    def parse_datum(cur):
        try:
            return protoio.parse_binary(cur.value(), protoio.schema().Datum(), 'the value')
        except protoio.CaffeFileError as exc:
            raise MeanError('{}: key {!r}: not a Datum: {}'.format(input_db, cur.key(), exc)) \
                from None

    db = open_db(input_db, backend, 'r')
    try:
        cur = db.cursor()
        if not cur.valid():
            raise MeanError('database {} is empty'.format(input_db))
        first = parse_datum(cur)
        if decode_datum_native(first):
            log('I', 'Decoding Datum')
        channels, height, width = first.channels, first.height, first.width
        data_size = channels * height * width
        size_in_datum = max(len(first.data), len(first.float_data))
        sums = np.zeros(size_in_datum, dtype=np.float32)
        log('I', 'Starting iteration')
        count = 0
        # LMDB knows its size from a stat; LevelDB would need a full scan
        total = len(db) if type(db).__name__ == '_LMDB' else None
        bar = progress(total, 'compute_image_mean')
        while cur.valid():
            datum = parse_datum(cur)
            decode_datum_native(datum)
            n = max(len(datum.data), len(datum.float_data))
            if n != data_size:
                raise MeanError(
                    'Check failed: size_in_datum == data_size ({} vs. {}) '
                    'Incorrect data field size {} (key {!r})'.format(
                        n, data_size, n, cur.key()))
            values = _datum_values(datum)
            if values.size != sums.size:
                raise MeanError('Incorrect data field size {} (key {!r})'
                                .format(values.size, cur.key()))
            # float += uint8 / float: float32 arithmetic, as in Caffe
            sums = np.add(sums, values, dtype=np.float32)
            count += 1
            bar.update(1)
            if count % 10000 == 0:
                log('I', 'Processed {} files.'.format(count))
            cur.next()
        cur.close()
        bar.close()
    finally:
        db.close()
    if count % 10000 != 0:
        log('I', 'Processed {} files.'.format(count))
    mean = np.divide(sums, np.float32(count), dtype=np.float32)

    blob = protoio.schema().BlobProto()
    blob.num = 1
    blob.channels = channels
    blob.height = height
    blob.width = width
    blob.data.extend(mean.tolist())
    if output_file is not None:
        log('I', 'Write to {}'.format(output_file))
        protoio.write_binary(output_file, blob)
    dim = height * width
    log('I', 'Number of channels: {}'.format(channels))
    for c in range(channels):
        chan = mean[dim * c:dim * (c + 1)]
        total = (np.cumsum(chan, dtype=np.float32)[-1] if dim
                 else np.float32(0))
        value = np.float32(total) / np.float32(dim) if dim else float('nan')
        log('I', 'mean_value channel [{}]: {}'.format(
            c, _cpp_float(value)))
    return blob


def channel_means(blob):
    """Per-channel means as Caffe logs them (float32 sequential sums)."""
    data = np.asarray(blob.data, dtype=np.float32)
    dim = blob.height * blob.width
    out = []
    for c in range(blob.channels):
        total = np.cumsum(data[dim * c:dim * (c + 1)], dtype=np.float32)[-1]
        out.append(float(np.float32(total) / np.float32(dim)))
    return out


def _cpp_float(v):
    """``std::ostream << float`` with default formatting (%g, 6 digits)."""
    return '%g' % float(v)


def main(argv=None):
    from caffe.data.db import DBError
    return run_tool('compute_image_mean', USAGE, FLAGS_SPEC, argv, 1, 2,
                    lambda flags, args: compute_image_mean(
                        args[0], args[1] if len(args) == 2 else None, backend=flags['backend']),
                    (MeanError, DBError, OSError))


if __name__ == '__main__':
    sys.exit(main())
