"""caffe.Classifier: a Net that classifies images (pycaffe semantics)."""
import numpy as np

from . import io as caffe_io
from ._common import TEST
from .net import Net


def image_transformer(net, mean=None, input_scale=None, raw_scale=None, channel_swap=None):
    """The Transformer Classifier and Detector use: HxWxK images to the net's
    first input, with the optional mean, scales and channel swap."""
    in_ = net.inputs[0]
    transformer = caffe_io.Transformer({in_: net.blobs[in_].data.shape})
    transformer.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(in_, mean)
    if input_scale is not None:
        transformer.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(in_, channel_swap)
    return transformer


class Classifier(Net):
    """Net for image classification: resizes inputs to ``image_dims``, takes
    center or 10 oversampled crops of the net's input size, preprocesses with
    a ``caffe.io.Transformer`` and averages the crops' predictions.

    ``mean``, ``input_scale``, ``raw_scale``, ``channel_swap`` configure the
    transformer as in pycaffe.
    """

    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None,
                 input_scale=None, raw_scale=None, channel_swap=None):
        Net.__init__(self, model_file, TEST, weights=pretrained_file)
        in_ = self.inputs[0]
        self.transformer = image_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self.blobs[in_].data.shape[2:])
        if not image_dims:
            image_dims = self.crop_dims
        self.image_dims = image_dims

    def predict(self, inputs, oversample=True):
        """(N x C) class probabilities for N (H x W x K) images; with
        ``oversample`` the mean over center, corner and mirrored crops."""
        input_ = np.zeros((len(inputs), self.image_dims[0], self.image_dims[1],
                           inputs[0].shape[2]), dtype=np.float32)
        for ix, im in enumerate(inputs):
            input_[ix] = caffe_io.resize_image(im, self.image_dims)
        if oversample:
            input_ = caffe_io.oversample(input_, self.crop_dims)
        else:
            center = np.array(self.image_dims) / 2.0
            box = np.tile(center, (1, 2))[0] + np.concatenate(
                [-self.crop_dims / 2.0, self.crop_dims / 2.0])
            box = box.astype(int)
            input_ = input_[:, box[0]:box[2], box[1]:box[3], :]
        in_ = self.inputs[0]
        caffe_in = np.zeros(np.array(input_.shape)[[0, 3, 1, 2]], dtype=np.float32)
        for ix, crop in enumerate(input_):
            caffe_in[ix] = self.transformer.preprocess(in_, crop)
        out = self.forward_all(**{in_: caffe_in})
        predictions = out[self.outputs[0]]
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10, -1)).mean(1)
        return predictions
