"""Convolution and Deconvolution (ConvolutionParameter)."""


def _spatial(param, field, values, default):
    values = [int(v) for v in values]
    if all(v == default for v in values) and field != "kernel_size":
        return
    if len(values) == 2 and values[0] != values[1]:
        setattr(param, field.replace("_size", "") + "_h", values[0])
        setattr(param, field.replace("_size", "") + "_w", values[1])
        return
    if len(set(values)) == 1:
        getattr(param, field).append(values[0])
    else:
        getattr(param, field).extend(values)


def convolution(net, name, bottom, top, weight, bias, stride, pad, dilation, group,
                transposed=False):
    """``weight`` in Caffe's layout: (out, in/group, k...) for Convolution,
    (in, out/group, k...) for Deconvolution (the same as PyTorch's in both cases)."""
    kernel = weight.shape[2:]
    num_output = weight.shape[1] * group if transposed else weight.shape[0]
    blobs = [weight] + ([bias] if bias is not None else [])
    layer = net.add("Deconvolution" if transposed else "Convolution", name, [bottom], [top], blobs)
    p = layer.convolution_param
    p.num_output = int(num_output)
    if bias is None:
        p.bias_term = False
    if len(kernel) == 2 and kernel[0] != kernel[1]:
        p.kernel_h, p.kernel_w = int(kernel[0]), int(kernel[1])
    elif len(set(kernel)) == 1:
        p.kernel_size.append(int(kernel[0]))
    else:
        p.kernel_size.extend(int(k) for k in kernel)
    _spatial(p, "stride", stride, 1)
    _spatial(p, "pad", pad, 0)
    if any(int(d) != 1 for d in dilation):
        p.dilation.extend(int(d) for d in dilation) if len(set(dilation)) > 1 \
            else p.dilation.append(int(dilation[0]))
    if group != 1:
        p.group = int(group)
    return layer
