"""Record sources shared by the data layers and the tools: key/value
databases of serialized records (:mod:`caffe.data.db`, LMDB and LevelDB as
Caffe's ``caffe::db``) and the text lists of ImageData and WindowData
(:mod:`caffe.data.lists`).  The layers read from here; ``caffe/tools`` writes."""
