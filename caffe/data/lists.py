"""Text list sources of the data layers: ImageData's image list and
WindowData's R-CNN window file, parsed as Caffe parses them."""
import numpy as np


def _c_atoi(text):
    s = text.lstrip(" \t\n\v\f\r")
    j = 1 if s[:1] in ("+", "-") else 0
    k = j
    while k < len(s) and s[k] in "0123456789":
        k += 1
    return int(s[:k]) if k > j else 0


def read_image_list(source):
    """Caffe's ImageData list: ``path label`` per line, split at the last space."""
    with open(source, "rb") as f:
        text = f.read().decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for line in lines:
        pos = line.rfind(" ")
        if pos < 0:
            out.append((line, _c_atoi(line)))
        else:
            out.append((line[:pos], _c_atoi(line[pos + 1:])))
    return out


def read_window_file(source, root_folder, fg_threshold, bg_threshold):
    """Parse an R-CNN window file.  Returns (images, fg, bg, channels) where
    images[i] = (path, (C, H, W)) and windows are
    [image_index, label, overlap, x1, y1, x2, y2]."""
    with open(source, "r") as f:
        tokens = f.read().split()
    images, fg, bg = [], [], []
    pos = 0
    channels = None
    f32 = np.float32
    fg_t, bg_t = f32(fg_threshold), f32(bg_threshold)

    def take():
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError("unexpected end of the window file")
        pos += 1
        return tokens[pos - 1]

    if len(tokens) < 2:
        raise ValueError("window file is empty")
    while pos < len(tokens):
        tag = take()
        if tag != "#":
            raise ValueError("expected '#', got %r" % tag)
        image_index = int(take())
        path = root_folder + take()
        size = (int(take()), int(take()), int(take()))
        channels = size[0]
        images.append((image_index, path, size))
        for _ in range(int(take())):
            label = int(take())
            overlap = f32(float(take()))
            x1, y1, x2, y2 = int(take()), int(take()), int(take()), int(take())
            if overlap >= fg_t:
                if label <= 0:
                    raise ValueError("foreground window of image %d has label %d; must be > 0"
                                     % (image_index, label))
                fg.append((image_index, label, overlap, x1, y1, x2, y2))
            elif overlap < bg_t:
                bg.append((image_index, 0, f32(0), x1, y1, x2, y2))
    return images, fg, bg, channels
