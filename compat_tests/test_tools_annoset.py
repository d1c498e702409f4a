"""SSD dataset tools: convert_annoset writes the fork's LMDB byte for byte
(golden annoset made by the fork's own tool), other label types and flags,
get_image_size."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from caffe.proto import caffe_pb2
from caffe.tools import convert_annoset as ca
from caffe.tools import get_image_size as gis
from caffe.tools._db import open_db

ANNOSET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "ssd", "annoset")


def records(path):
    db = open_db(path, "lmdb", "r")
    try:
        return [(bytes(k), bytes(v)) for k, v in db.cursor()]
    finally:
        db.close()


def test_convert_annoset_is_byte_identical_to_the_fork(tmp_path):
    env = dict(os.environ)
    out = tmp_path / "lmdb"
    r = subprocess.run([sys.executable, "-m", "caffe.tools.convert_annoset",
                        "--anno_type=detection", "--label_type=xml",
                        "--label_map_file=labelmap.prototxt", "--check_label=true",
                        "--encode_type=jpg", "--encoded=true", "./", "list.txt", str(out)],
                       cwd=ANNOSET, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "bounding box exceeds image boundary" in r.stderr   # img3's car
    assert records(str(out)) == records(os.path.join(ANNOSET, "lmdb"))


def test_label_types_and_grouping(tmp_path):
    shutil.copy(os.path.join(ANNOSET, "images", "img0.jpg"), tmp_path / "a.jpg")
    (tmp_path / "a.txt").write_text("2 10 10 50 40\n1 0 0 20 20\n2 5 5 15 15\n")
    (tmp_path / "a.json").write_text(json.dumps(
        {"image": {"height": 80, "width": 100},
         "annotation": [{"category_id": "dog", "bbox": [10, 10, 40, 30], "iscrowd": 1}]}))
    (tmp_path / "txt.list").write_text("a.jpg a.txt\n")
    (tmp_path / "json.list").write_text("a.jpg a.json\n")
    (tmp_path / "cls.list").write_text("a.jpg 7\n")
    root = str(tmp_path) + "/"
    lm = os.path.join(ANNOSET, "labelmap.prototxt")
    ca.convert_annoset(root, str(tmp_path / "txt.list"), str(tmp_path / "t"), anno_type="detection",
                       label_type="txt", label_map_file=lm, show_progress=False)
    ad = caffe_pb2.AnnotatedDatum()
    ad.ParseFromString(records(str(tmp_path / "t"))[0][1])
    assert [g.group_label for g in ad.annotation_group] == [2, 1]
    assert [a.instance_id for a in ad.annotation_group[0].annotation] == [0, 1]
    assert ad.datum.label == -1 and ad.type == caffe_pb2.AnnotatedDatum.BBOX
    h, w = ad.datum.height, ad.datum.width
    b = ad.annotation_group[0].annotation[0].bbox
    assert b.xmin == pytest.approx(10 / w) and b.ymax == pytest.approx(40 / h)
    ca.convert_annoset(root, str(tmp_path / "json.list"), str(tmp_path / "j"),
                       anno_type="detection", label_type="json", label_map_file=lm,
                       resize_height=30, resize_width=40, show_progress=False)
    ad.ParseFromString(records(str(tmp_path / "j"))[0][1])
    assert not ad.datum.encoded and (ad.datum.channels, ad.datum.height, ad.datum.width) == (3, 30, 40)
    b = ad.annotation_group[0].annotation[0].bbox
    assert (b.xmin, b.ymax, b.difficult) == (pytest.approx(0.1), pytest.approx(0.5), True)
    ca.convert_annoset(root, str(tmp_path / "cls.list"), str(tmp_path / "c"), encoded=True,
                       min_dim=200, show_progress=False)
    ad.ParseFromString(records(str(tmp_path / "c"))[0][1])
    assert ad.datum.label == 7 and ad.datum.encoded and min(ad.datum.height, ad.datum.width) == 200
    assert not ad.HasField("type")


def test_errors(tmp_path):
    (tmp_path / "l.txt").write_text("a.jpg a.xml\n")
    with pytest.raises(ca.ConvertError, match="label map"):
        ca.convert_annoset(str(tmp_path) + "/", str(tmp_path / "l.txt"), str(tmp_path / "o"),
                           anno_type="detection", label_map_file=str(tmp_path / "none"),
                           show_progress=False)
    dup = tmp_path / "dup.prototxt"
    dup.write_text('item { name: "a" label: 1 } item { name: "a" label: 2 }')
    with pytest.raises(ca.ConvertError, match="duplicates"):
        ca.convert_annoset(str(tmp_path) + "/", str(tmp_path / "l.txt"), str(tmp_path / "o2"),
                           anno_type="detection", label_map_file=str(dup), check_label=True,
                           show_progress=False)
    with pytest.raises(ca.ConvertError, match="label file type"):
        ca.convert_annoset("./", str(tmp_path / "l.txt"), str(tmp_path / "o3"),
                           anno_type="detection", label_type="csv", show_progress=False)


def test_get_image_size(tmp_path):
    out = tmp_path / "sizes.txt"
    assert gis.main([ANNOSET + "/", os.path.join(ANNOSET, "list.txt"), str(out)]) == 0
    lines = out.read_text().split("\n")
    assert lines[0].split()[0] == "img1" and len([l for l in lines if l]) == 6
    ids = tmp_path / "ids.txt"
    ids.write_text("".join("img%d %d\n" % (i, 100 + i) for i in range(6)))
    gis.get_image_size(ANNOSET + "/", os.path.join(ANNOSET, "list.txt"), str(out), str(ids))
    assert out.read_text().split()[0] == "101"
    assert gis.main([ANNOSET + "/", str(tmp_path / "missing"), str(out)]) == 1
