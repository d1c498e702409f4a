"""InnerProduct and Embed (the layers holding a dense weight matrix)."""


def inner_product(net, name, bottom, top, weight, bias, axis=1):
    """``weight``: (num_output, K), PyTorch's Linear layout."""
    blobs = [weight] + ([bias] if bias is not None else [])
    layer = net.add("InnerProduct", name, [bottom], [top], blobs)
    p = layer.inner_product_param
    p.num_output = int(weight.shape[0])
    if bias is None:
        p.bias_term = False
    if axis != 1:
        p.axis = int(axis)
    return layer


def embed(net, name, bottom, top, weight):
    """``weight``: (input_dim, num_output), as nn.Embedding stores it."""
    layer = net.add("Embed", name, [bottom], [top], [weight])
    p = layer.embed_param
    p.input_dim = int(weight.shape[0])
    p.num_output = int(weight.shape[1])
    p.bias_term = False
    return layer
