"""Write ``name height width`` for every image of a list, as the SSD fork's
``get_image_size`` does (the name_size_file DetectionEvaluate reads).

Usage:
    python -m caffe.tools.get_image_size [--name_id_file=F] ROOTFOLDER/ LISTFILE OUTFILE

LISTFILE lines are ``image annotation``; the name written is the image's
file stem, or its id from ``--name_id_file`` (lines ``name id``).
"""
import os
import sys

from caffe.tools import log, run_tool

USAGE = ('Get sizes of a set of images.\n'
         'Usage:\n'
         '    get_image_size ROOTFOLDER/ LISTFILE OUTFILE\n')

FLAGS_SPEC = {
    'name_id_file': (str, '', 'A file which maps image_name to image_id.'),
}


class SizeError(RuntimeError):
    pass


def _pairs(path, what):
    try:
        with open(path) as f:
            toks = f.read().split()
    except OSError as e:
        raise SizeError('Failed to open {}: {}'.format(what, e)) from e
    return [(toks[k], toks[k + 1]) for k in range(0, len(toks) - 1, 2)]


def get_image_size(root_folder, listfile, outfile, name_id_file=''):
    """Library form of the tool; returns the number of images written."""
    import cv2
    lines = _pairs(listfile, 'file: ' + listfile)
    log('I', 'A total of {} images.'.format(len(lines)))
    ids = {}
    if name_id_file:
        for name, i in _pairs(name_id_file, 'name_id_file: ' + name_id_file):
            if name in ids:
                raise SizeError('{}: duplicated name {}'.format(name_id_file, name))
            ids[name] = int(i)
        if len(ids) != len(lines):
            raise SizeError('{} names in {}, {} images in {}'.format(
                len(ids), name_id_file, len(lines), listfile))
    out = []
    for img_path, _ in lines:
        path = os.path.join(root_folder, img_path)
        img = cv2.imread(path)
        if img is None:
            raise SizeError('Could not open or find file {}'.format(path))
        stem = os.path.splitext(os.path.basename(img_path))[0]
        if ids:
            if stem not in ids:
                raise SizeError('{}: no id for image {}'.format(name_id_file, stem))
            stem = str(ids[stem])
        out.append('{} {} {}\n'.format(stem, img.shape[0], img.shape[1]))
    with open(outfile, 'w') as f:
        f.writelines(out)
    log('I', 'Processed {} files.'.format(len(out)))
    return len(out)


def main(argv=None):
    return run_tool('get_image_size', USAGE, FLAGS_SPEC, argv, 3, None,
                    lambda flags, args: get_image_size(*args[:3], **flags), (SizeError, OSError))


if __name__ == '__main__':
    sys.exit(main())
