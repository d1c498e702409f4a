"""convert_imageset / compute_image_mean / caffe.tools._db against golden
outputs of BVLC Caffe's tools (compat_tests/golden/data)."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import cv2  # noqa: E402

import caffe.io as cio  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from caffe.tools import FlagError, parse_flags  # noqa: E402
from caffe.tools import compute_image_mean as cim  # noqa: E402
from caffe.tools import convert_imageset as cis  # noqa: E402
from caffe.tools._db import DBError, open_db  # noqa: E402

DATA = os.path.join(HERE, 'golden', 'data')
IMAGES = os.path.join(DATA, 'images') + os.sep
LIST = os.path.join(DATA, 'images.txt')


def records(path, backend='lmdb'):
    with open_db(path, backend, 'r') as db:
        return list(db)


def datum(value):
    return caffe_pb2.Datum.FromString(value)


def decoded(d):
    """Datum -> (CHW uint8 array, label), decoding encoded ones natively."""
    d2 = caffe_pb2.Datum()
    d2.CopyFrom(d)
    cim.decode_datum_native(d2)
    return cio.datum_to_array(d2), d2.label


# --------------------------------------------------------- compute mean ---

def test_compute_image_mean_matches_golden(tmp_path, capsys):
    out = tmp_path / 'mean.binaryproto'
    assert cim.main([os.path.join(DATA, 'raw_lmdb'), str(out)]) == 0
    with open(os.path.join(DATA, 'mean.binaryproto'), 'rb') as f:
        gold = f.read()
    assert out.read_bytes() == gold
    blob = caffe_pb2.BlobProto.FromString(gold)
    err = capsys.readouterr().err
    assert 'Number of channels: 3' in err
    for c, v in enumerate(cim.channel_means(blob)):
        assert 'mean_value channel [{}]: {}'.format(c, '%g' % v) in err
    assert 'Processed 6 files.' in err


def test_compute_image_mean_numerics_float32():
    """Sum in float32 in db order, divide in float32 (Caffe)."""
    arrs = [cio.datum_to_array(datum(v))
            for _, v in records(os.path.join(DATA, 'raw_lmdb'))]
    s = np.zeros(arrs[0].size, np.float32)
    for a in arrs:
        s = s + a.ravel().astype(np.float32)
    ref = (s / np.float32(len(arrs))).astype(np.float32)
    blob = cim.compute_image_mean(os.path.join(DATA, 'raw_lmdb'))
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 10, 12)
    np.testing.assert_array_equal(np.asarray(blob.data, np.float32), ref)


def test_compute_image_mean_encoded_and_float(tmp_path):
    # encoded db: same mean as the decoded pixels
    blob = cim.compute_image_mean(os.path.join(DATA, 'enc_lmdb'))
    arrs = [decoded(datum(v))[0].astype(np.float32)
            for _, v in records(os.path.join(DATA, 'enc_lmdb'))]
    np.testing.assert_allclose(cio.blobproto_to_array(blob)[0],
                               np.mean(arrs, 0), rtol=1e-6)
    # float_data db
    path = str(tmp_path / 'f')
    rs = np.random.RandomState(0)
    fl = [rs.rand(2, 3, 4).astype(np.float32) for _ in range(3)]
    with open_db(path, 'lmdb', 'w') as db:
        txn = db.transaction()
        for i, a in enumerate(fl):
            txn.put('%08d' % i, cio.array_to_datum(a, i).SerializeToString())
        txn.commit()
    blob = cim.compute_image_mean(path)
    np.testing.assert_allclose(cio.blobproto_to_array(blob)[0],
                               np.mean(fl, 0), rtol=1e-6)


def test_compute_image_mean_errors(tmp_path, capsys):
    assert cim.main([]) == 1
    assert cim.main(['-nosuchflag=1', 'x']) == 1
    assert "unknown command line flag 'nosuchflag'" in capsys.readouterr().err
    assert cim.main([str(tmp_path / 'missing')]) == 1
    empty = str(tmp_path / 'empty')
    open_db(empty, 'lmdb', 'w').close()
    assert cim.main([empty]) == 1
    assert 'is empty' in capsys.readouterr().err
    # inconsistent sizes
    bad = str(tmp_path / 'bad')
    with open_db(bad, 'lmdb', 'w') as db:
        db.put('0', cio.array_to_datum(np.zeros((1, 2, 2), np.uint8))
               .SerializeToString())
        db.put('1', cio.array_to_datum(np.zeros((1, 3, 2), np.uint8))
               .SerializeToString())
    assert cim.main([bad]) == 1
    assert 'Incorrect data field size 6' in capsys.readouterr().err


def test_compute_image_mean_cli(tmp_path):
    out = tmp_path / 'm.binaryproto'
    r = subprocess.run([sys.executable, '-m', 'caffe.tools.compute_image_mean',
                        '--backend=lmdb', os.path.join(DATA, 'raw_lmdb'),
                        str(out)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == open(os.path.join(DATA, 'mean.binaryproto'),
                                    'rb').read()
    assert 'mean_value channel [2]:' in r.stderr


# ------------------------------------------------------ convert_imageset ---

def test_convert_encoded_matches_golden(tmp_path):
    out = str(tmp_path / 'enc')
    rc = cis.main(['--encoded', '-encode_type=png', '-resize_height=12',
                   '--resize_width=10', IMAGES, LIST, out])
    assert rc == 0
    mine = records(out)
    gold = records(os.path.join(DATA, 'enc_lmdb'))
    assert [k for k, _ in mine] == [k for k, _ in gold]
    assert mine[0][0] == b'00000000_im0.png'
    for (_, a), (_, b) in zip(mine, gold):
        da, db_ = datum(a), datum(b)
        assert da.encoded and db_.encoded
        xa, la = decoded(da)
        xb, lb = decoded(db_)
        assert la == lb
        np.testing.assert_array_equal(xa, xb)


def test_convert_raw_equals_decoded_golden(tmp_path):
    out = str(tmp_path / 'raw')
    assert cis.main(['-resize_height', '12', '-resize_width', '10',
                     IMAGES, LIST, out]) == 0
    mine = records(out)
    gold = records(os.path.join(DATA, 'enc_lmdb'))
    labels = [0, 1, 2, 0, 1]
    assert len(mine) == 5
    for i, ((ka, a), (kb, b)) in enumerate(zip(mine, gold)):
        assert ka == kb
        d = datum(a)
        assert not d.encoded
        assert (d.channels, d.height, d.width) == (3, 12, 10)
        assert d.label == labels[i]
        np.testing.assert_array_equal(cio.datum_to_array(d),
                                      decoded(datum(b))[0])


def test_convert_opencv_semantics(tmp_path):
    """BGR, HWC -> CHW, cv2.resize bilinear, grey with IMREAD_GRAYSCALE."""
    out = str(tmp_path / 'c')
    assert cis.main(['-resize_height=7', '-resize_width=9', IMAGES, LIST,
                     out]) == 0
    d = datum(records(out)[2][1])
    img = cv2.resize(cv2.imread(IMAGES + 'im2.png', cv2.IMREAD_COLOR), (9, 7),
                     interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(cio.datum_to_array(d),
                                  img.transpose(2, 0, 1))
    out = str(tmp_path / 'g')
    assert cis.main(['-gray', IMAGES, LIST, out]) == 0
    d = datum(records(out)[3][1])
    img = cv2.imread(IMAGES + 'im3.png', cv2.IMREAD_GRAYSCALE)
    assert (d.channels, d.height, d.width) == (1,) + img.shape
    np.testing.assert_array_equal(cio.datum_to_array(d)[0], img)


def test_convert_encoded_no_resize_keeps_file_bytes(tmp_path):
    out = str(tmp_path / 'e')
    assert cis.main(['-encoded=true', IMAGES, LIST, out]) == 0
    for i, (_k, v) in enumerate(records(out)):
        d = datum(v)
        with open(IMAGES + 'im%d.png' % i, 'rb') as f:
            assert d.data == f.read()
        assert d.encoded and not d.HasField('channels')


def test_convert_shuffle_and_bool_forms(tmp_path):
    out = str(tmp_path / 's')
    assert cis.main(['-shuffle=true', '-gray=false', IMAGES, LIST, out]) == 0
    recs = records(out)
    got = sorted((k.decode().split('_', 1)[1], datum(v).label)
                 for k, v in recs)
    assert got == [('im0.png', 0), ('im1.png', 1), ('im2.png', 2),
                   ('im3.png', 0), ('im4.png', 1)]


def test_convert_unreadable_image(tmp_path, capsys):
    lst = tmp_path / 'list.txt'
    lst.write_text('im0.png 0\nmissing.png 5\nim1.png 1\n')
    out = str(tmp_path / 'u')
    assert cis.main([IMAGES, str(lst), out]) == 0  # Caffe skips, exit 0
    err = capsys.readouterr().err
    assert 'Could not open or find file ' + IMAGES + 'missing.png' in err
    keys = [k for k, _ in records(out)]
    assert keys == [b'00000000_im0.png', b'00000002_im1.png']


def test_convert_errors(tmp_path, capsys):
    out = str(tmp_path / 'x')
    assert cis.main([IMAGES, LIST]) == 1
    assert cis.main(['-bogus', IMAGES, LIST, out]) == 1
    assert "unknown command line flag 'bogus'" in capsys.readouterr().err
    assert cis.main([IMAGES, str(tmp_path / 'nolist.txt'), out]) == 1
    assert 'nolist.txt' in capsys.readouterr().err
    assert cis.main([IMAGES, LIST, out]) == 0
    assert cis.main([IMAGES, LIST, out]) == 1      # exists already
    assert 'already exists' in capsys.readouterr().err
    # images differ in height: -check_size fails without a resize
    assert cis.main(['-check_size', IMAGES, LIST,
                     str(tmp_path / 'cs')]) == 1
    assert 'Incorrect data field size' in capsys.readouterr().err
    assert cis.main(['-check_size', '-resize_height=5', '-resize_width=5',
                     IMAGES, LIST, str(tmp_path / 'cs2')]) == 0


def test_convert_cli(tmp_path):
    out = str(tmp_path / 'cli')
    r = subprocess.run([sys.executable, '-m', 'caffe.tools.convert_imageset',
                        '--resize_height=12', '-resize_width=10',
                        '-backend', 'lmdb', IMAGES, LIST, out], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'A total of 5 images.' in r.stderr
    assert 'Processed 5 files.' in r.stderr
    assert len(records(out)) == 5


def test_list_parsing(tmp_path):
    lst = tmp_path / 'l.txt'
    lst.write_bytes(b'a b.png 3\nc.png -2\r\nnolabel.png\n')
    assert cis.read_list(str(lst)) == [('a b.png', 3), ('c.png', -2),
                                       ('nolabel.png', 0)]


def test_parse_flags():
    spec = {'b': (bool, False, ''), 'n': (int, 0, ''), 's': (str, 'x', '')}
    f, pos = parse_flags(['-b', 'p1', '--n=3', '-s', 'v', 'p2'], spec)
    assert f == {'b': True, 'n': 3, 's': 'v'} and pos == ['p1', 'p2']
    f, _ = parse_flags(['-nob', '-b=false'], spec)
    assert f['b'] is False
    f, pos = parse_flags(['--b=1', '--', '-n'], spec)
    assert f['b'] is True and pos == ['-n']
    for bad in (['-q'], ['-n=x'], ['-b=maybe'], ['-n']):
        with pytest.raises(FlagError):
            parse_flags(bad, spec)


# ------------------------------------------------------------------- _db ---

def test_db_roundtrip_and_cursor(tmp_path):
    path = str(tmp_path / 'db')
    db = open_db(path, 'lmdb', 'w')
    with db.transaction() as txn:
        for i in range(5):
            txn.put('%03d' % i, b'v%d' % i)
    db.put(b'zzz', b'last')
    db.close()
    with pytest.raises(DBError):
        open_db(path, 'lmdb', 'w')
    db = open_db(path)
    assert len(db) == 6
    assert db.get('002') == b'v2'
    cur = db.cursor()
    seen = []
    while cur.valid():
        seen.append(cur.key())
        cur.next()
    assert seen == [b'000', b'001', b'002', b'003', b'004', b'zzz']
    cur.seek_to_first()
    assert cur.valid() and cur.value() == b'v0'
    cur.close()
    with pytest.raises(DBError):
        db.transaction()
    db.close()
    with open_db(path, 'lmdb', 'a') as db:
        db.put('aaa', b'x')
    assert [k for k, _ in open_db(path)][0] == b'000'
    assert len(open_db(path)) == 7


def test_db_map_grows(tmp_path, monkeypatch):
    from caffe.tools import _db
    monkeypatch.setattr(_db._LMDB, '_INITIAL_MAP', 1 << 16)
    path = str(tmp_path / 'big')
    with open_db(path, 'lmdb', 'w') as db:
        txn = db.transaction()
        for i in range(64):
            txn.put('%05d' % i, os.urandom(4096))
        txn.commit()
    assert len(open_db(path)) == 64


def test_db_read_only_golden_copy(tmp_path):
    """Reading writes nothing into the db folder (no lock file)."""
    src = os.path.join(DATA, 'raw_lmdb')
    dst = str(tmp_path / 'ro')
    shutil.copytree(src, dst)
    before = sorted(os.listdir(dst))
    assert len(records(dst)) == 6
    assert sorted(os.listdir(dst)) == before


def test_db_bad_backend_and_leveldb(tmp_path):
    with pytest.raises(DBError, match='Unknown database backend'):
        open_db(str(tmp_path / 'x'), 'rocksdb')
    with pytest.raises(DBError, match='Unknown database mode'):
        open_db(str(tmp_path / 'x'), 'lmdb', 'rw')
    try:
        import plyvel  # noqa: F401
    except ImportError:
        with pytest.raises(DBError, match='plyvel'):
            open_db(str(tmp_path / 'l'), 'leveldb', 'w')
        assert cis.main(['-backend=leveldb', IMAGES, LIST,
                         str(tmp_path / 'l')]) == 1
        return
    out = str(tmp_path / 'lv')
    assert cis.main(['-backend=leveldb', '-resize_height=12', '-resize_width=10',
                     IMAGES, LIST, out]) == 0
    assert len(records(out, 'leveldb')) == 5
    blob = cim.compute_image_mean(out, backend='leveldb')
    assert blob.channels == 3
